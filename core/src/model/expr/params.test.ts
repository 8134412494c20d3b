import { ParamType } from "@kaon/proto";
import { describe, expect, it } from "vitest";
import { coerceParam } from "./params.js";

const T = ParamType;

describe("coerceParam", () => {
  it("accepts values of the declared type", () => {
    expect(coerceParam("x", T.PARAM_TYPE_STRING, "s")).toEqual({ ok: true, value: "x" });
    expect(coerceParam(3, T.PARAM_TYPE_INT, "n")).toEqual({ ok: true, value: 3 });
    expect(coerceParam(3n, T.PARAM_TYPE_INT, "n")).toEqual({ ok: true, value: 3 });
    expect(coerceParam(2.5, T.PARAM_TYPE_DOUBLE, "d")).toEqual({ ok: true, value: 2.5 });
    expect(coerceParam(2, T.PARAM_TYPE_DOUBLE, "d")).toEqual({ ok: true, value: 2 });
    expect(coerceParam(false, T.PARAM_TYPE_BOOL, "b")).toEqual({ ok: true, value: false });
    expect(coerceParam([1, "a"], T.PARAM_TYPE_LIST, "l")).toEqual({ ok: true, value: [1, "a"] });
    expect(coerceParam({ a: 1 }, T.PARAM_TYPE_MAP, "m")).toEqual({ ok: true, value: { a: 1 } });
    expect(coerceParam({ a: [null] }, T.PARAM_TYPE_JSON, "j")).toEqual({
      ok: true,
      value: { a: [null] },
    });
    expect(coerceParam(7, T.PARAM_TYPE_UNSPECIFIED, "u")).toEqual({ ok: true, value: 7 });
  });

  it("accepts strings that spell the type (command lines, env vars)", () => {
    expect(coerceParam("10", T.PARAM_TYPE_INT, "epochs")).toEqual({ ok: true, value: 10 });
    expect(coerceParam(" -3 ", T.PARAM_TYPE_INT, "n")).toEqual({ ok: true, value: -3 });
    expect(coerceParam("1e-3", T.PARAM_TYPE_DOUBLE, "lr")).toEqual({ ok: true, value: 0.001 });
    expect(coerceParam("true", T.PARAM_TYPE_BOOL, "b")).toEqual({ ok: true, value: true });
    expect(coerceParam('["us","eu"]', T.PARAM_TYPE_LIST, "l")).toEqual({
      ok: true,
      value: ["us", "eu"],
    });
    expect(coerceParam('{"k":1}', T.PARAM_TYPE_MAP, "m")).toEqual({ ok: true, value: { k: 1 } });
  });

  it("rejects mismatches with a message naming param, type and value", () => {
    expect(coerceParam(2.5, T.PARAM_TYPE_INT, "epochs")).toEqual({
      ok: false,
      error: "param 'epochs' expects INT, got double 2.5",
    });
    expect(coerceParam("ten", T.PARAM_TYPE_INT, "epochs")).toEqual({
      ok: false,
      error: "param 'epochs' expects INT, got string \"ten\"",
    });
    expect(coerceParam(2 ** 60, T.PARAM_TYPE_INT, "big")).toMatchObject({ ok: false });
    expect(coerceParam(1, T.PARAM_TYPE_STRING, "s")).toEqual({
      ok: false,
      error: "param 's' expects STRING, got int 1",
    });
    expect(coerceParam("yes", T.PARAM_TYPE_BOOL, "b")).toMatchObject({ ok: false });
    expect(coerceParam("abc", T.PARAM_TYPE_DOUBLE, "d")).toMatchObject({ ok: false });
    expect(coerceParam({}, T.PARAM_TYPE_LIST, "l")).toEqual({
      ok: false,
      error: "param 'l' expects LIST, got map {}",
    });
    expect(coerceParam("[1", T.PARAM_TYPE_LIST, "l")).toEqual({
      ok: false,
      error: "param 'l' expects LIST, got string \"[1\" (a string must hold a JSON list)",
    });
    expect(coerceParam([1], T.PARAM_TYPE_MAP, "m")).toMatchObject({ ok: false });
    expect(coerceParam(undefined, T.PARAM_TYPE_STRING, "s")).toEqual({
      ok: false,
      error: "param 's' has no value",
    });
  });

  it("rejects values that are not JSON", () => {
    expect(coerceParam({ a: Number.NaN }, T.PARAM_TYPE_JSON, "j")).toEqual({
      ok: false,
      error: "param 'j'.a is NaN, which JSON cannot hold",
    });
    expect(coerceParam([new Date(0)], T.PARAM_TYPE_LIST, "l")).toMatchObject({ ok: false });
    expect(coerceParam(Number.POSITIVE_INFINITY, T.PARAM_TYPE_DOUBLE, "d")).toMatchObject({
      ok: false,
    });
  });
});
