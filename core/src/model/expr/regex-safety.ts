// `matches()` runs JavaScript regular expressions, which backtrack: a pattern such as
// `(a+)+$` takes exponential time on a short input and would block the event loop, which no
// timeout can interrupt. Patterns must therefore be literals that pass this check at parse
// time: no nested quantifiers, no quantified alternation, no backreferences.

/** Returns why `pattern` is unsafe or invalid, or undefined when it may be used. */
export function unsafeRegexReason(pattern: string): string | undefined {
  try {
    new RegExp(pattern);
  } catch (e) {
    return `invalid regular expression ${JSON.stringify(pattern)}: ${(e as Error).message}`;
  }
  // A stack of open groups: does the group contain a quantifier / an alternation?
  const stack: Array<{ quantified: boolean; alternation: boolean }> = [
    { quantified: false, alternation: false },
  ];
  let lastGroup: { quantified: boolean; alternation: boolean } | undefined;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    const top = stack[stack.length - 1]!;
    if (c === "\\") {
      const next = pattern[i + 1] ?? "";
      if (!inClass && /[1-9k]/.test(next)) return "backreferences are not allowed in matches()";
      i++;
      lastGroup = undefined;
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      continue;
    }
    switch (c) {
      case "[":
        inClass = true;
        lastGroup = undefined;
        break;
      case "(":
        stack.push({ quantified: false, alternation: false });
        lastGroup = undefined;
        break;
      case ")": {
        const closed = stack.length > 1 ? stack.pop()! : top;
        lastGroup = closed;
        const parent = stack[stack.length - 1]!;
        parent.quantified ||= closed.quantified;
        break;
      }
      case "|":
        top.alternation = true;
        lastGroup = undefined;
        break;
      case "*":
      case "+":
      case "{":
      case "?": {
        const isRepeat = c !== "?";
        if (c === "?" && (pattern[i - 1] === "(" || /[*+?}]/.test(pattern[i - 1] ?? ""))) break;
        if (lastGroup && isRepeat && (lastGroup.quantified || lastGroup.alternation)) {
          return `pattern ${JSON.stringify(pattern)} nests a repeated group that itself repeats or alternates (e.g. (a+)+), which can take exponential time; rewrite it without nested repetition`;
        }
        top.quantified = true;
        lastGroup = undefined;
        if (c === "{") {
          const end = pattern.indexOf("}", i);
          if (end > i) i = end;
        }
        break;
      }
      default:
        lastGroup = undefined;
    }
  }
  return undefined;
}
