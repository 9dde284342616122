#!/bin/sh
# Makes the mclaude variant with cc-mirror, offline: cc-mirror 2.x downloads Claude Code's native binary
# from a release server and checks it against that server's sha256 manifest. With CLAUDE_RELEASES_URL
# empty, a server on 127.0.0.1 hands it the npm-installed binary given as $1; otherwise cc-mirror asks
# the server named there.
#   install-mclaude.sh <claude binary> <claude code version>
set -eu
binary=$1
version=$2
url=${CLAUDE_RELEASES_URL:-}
server=
if [ -z "$url" ]; then
  out=$(mktemp)
  node "$(dirname "$0")/claude-releases-server.mjs" "$binary" "$version" >"$out" &
  server=$!
  tries=0
  until [ -s "$out" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$server" 2>/dev/null; then
      echo "install-mclaude: the local release server did not start" >&2
      exit 1
    fi
    sleep 0.1
  done
  url=$(cat "$out")
  rm -f "$out"
fi
status=0
CC_MIRROR_CLAUDE_RELEASES_URL="$url" cc-mirror quick --provider mirror --name mclaude --no-tweak \
  --claude-version "$version" --no-tui || status=$?
if [ -n "$server" ]; then kill "$server"; fi
# cc-mirror keeps a second copy of the binary as a download cache; the variant has its own.
rm -rf "$HOME/.cc-mirror/.cache"
exit "$status"
