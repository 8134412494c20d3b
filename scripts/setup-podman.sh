#!/usr/bin/env bash
# Makes podman usable for kaon's container step tests on a Debian 12 machine without a
# registry or systemd: installs podman, the runc runtime, catatonit (for `--init`) and
# busybox-static (the test image is built from it, see test/fixtures/images/), and writes a
# containers.conf drop-in with what these machines need: runc as the OCI runtime, no default
# ulimits (raising them fails in an unprivileged sandbox), cgroupfs as cgroup manager and a
# file events logger (there is no systemd/journald). Safe to run again: each stage checks
# first. Needs root for the packages and the drop-in; as a normal user it says what to run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

have() { command -v "$1" >/dev/null 2>&1; }

step "podman for container steps"
missing=()
have podman || missing+=(podman)
[[ -x /usr/sbin/runc || -x /usr/bin/runc ]] || have runc || missing+=(runc)
[[ -x /usr/libexec/podman/catatonit || -x /usr/bin/catatonit ]] || missing+=(catatonit)
[[ -x /bin/busybox ]] || missing+=(busybox-static)
if ((${#missing[@]} == 0)); then
  note "packages present"
else
  if [[ $(id -u) -ne 0 ]]; then
    die "install these Debian packages first (as root): apt-get install -y --no-install-recommends ${missing[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  note "apt-get install ${missing[*]}"
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    note "retrying after apt-get update"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

conf_dir=/etc/containers/containers.conf.d
conf="$conf_dir/kaon.conf"
wanted='# Written by kaon scripts/setup-podman.sh: runc, no default ulimits, no systemd needed.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [[ -f "$conf" && "$(cat "$conf")" == "$wanted" ]]; then
  note "$conf up to date"
elif [[ $(id -u) -eq 0 ]]; then
  mkdir -p "$conf_dir"
  printf '%s\n' "$wanted" >"$conf"
  note "wrote $conf"
else
  # Rootless podman reads the user's drop-ins instead.
  user_dir="${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf.d"
  mkdir -p "$user_dir"
  printf '%s\n' "$wanted" >"$user_dir/kaon.conf"
  note "wrote $user_dir/kaon.conf (rootless podman also needs uidmap and subuid/subgid ranges)"
fi

# A container must actually run: import a one-file image (no registry) and run it.
probe_image=localhost/kaon-podman-probe:1
if ! podman image exists "$probe_image" 2>/dev/null; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  tar -C "$root" -cf "$root.tar" .
  podman import -q "$root.tar" "$probe_image" >/dev/null
  rm -f "$root.tar"
fi
if out=$(podman run --rm --init --network host "$probe_image" /bin/sh -c 'echo ok' 2>&1) && [[ "$out" == ok ]]; then
  ok "podman $(podman --version | awk '{print $3}') runs containers"
else
  die "podman cannot run a container on this machine: $out"
fi
