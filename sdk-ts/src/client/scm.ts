// Source control metadata for Deploy: when the deploying process runs in a git checkout, the
// version records its commit, branch, dirty flag, author and remote (ARCHITECTURE §4). Outside
// a checkout, or without git, there is simply no metadata.
import { execFile } from "node:child_process";
import { hostname, userInfo } from "node:os";
import type { ClientInfo, ScmInfo } from "@kaon/proto";

/** This SDK's name and version, as recorded on versions and runs. */
export const CLIENT_NAME = "kaon-ts";
export const CLIENT_VERSION = "0.1.0";

function git(args: string[], cwd: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile("git", args, { cwd, timeout: 5_000 }, (err, stdout) => {
      resolve(err ? undefined : stdout.trim());
    });
  });
}

/** Git metadata of the checkout containing `cwd`, or undefined when it is not in one. */
export async function scmInfo(cwd: string = process.cwd()): Promise<ScmInfo | undefined> {
  const commit = await git(["rev-parse", "HEAD"], cwd);
  if (!commit) return undefined;
  const [branch, status, author, repository] = await Promise.all([
    git(["rev-parse", "--abbrev-ref", "HEAD"], cwd),
    git(["status", "--porcelain", "--untracked-files=no"], cwd),
    git(["log", "-1", "--format=%an <%ae>"], cwd),
    git(["config", "--get", "remote.origin.url"], cwd),
  ]);
  return {
    commit,
    branch: branch ?? "",
    dirty: (status ?? "") !== "",
    author: author ?? "",
    repository: repository ?? "",
  };
}

/** Who is calling: this SDK, its version, the OS user and host. */
export function clientInfo(): ClientInfo {
  let user = "";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (some containers): leave it empty
  }
  return { name: CLIENT_NAME, version: CLIENT_VERSION, user, host: hostname() };
}
