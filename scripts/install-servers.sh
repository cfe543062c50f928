#!/usr/bin/env bash
# Install the real servers the tests start on 127.0.0.1 (PostgreSQL, OpenSSH's sshd, redis-server, ...) and the
# browser from Debian's packages. Skips what is already there; needs root (CI and the dev machines run as root).
set -euo pipefail
packages=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || packages+=(postgresql)
[[ -x /usr/sbin/sshd ]] || packages+=(openssh-server)
# The events queue's Redis Streams backend (tests/servers/redis.py).
command -v redis-server >/dev/null 2>&1 || [[ -x /usr/bin/redis-server ]] || packages+=(redis-server)
# The Contactsync page's browser test drives Debian's Chromium (playwright never downloads its own).
[[ -x /usr/bin/chromium ]] || packages+=(chromium)
# Export files are encrypted with GnuPG (exports/encryption.py, ADR 0013); gpgconf stops the tests' agents.
command -v gpg >/dev/null 2>&1 && command -v gpgconf >/dev/null 2>&1 || packages+=(gnupg)
if ((${#packages[@]})); then
  echo "install-servers: apt-get install ${packages[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
