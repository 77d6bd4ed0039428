# Sourced by the image scripts: which Debian archive to build from.
#
#   DEBIAN_MIRROR=URL            use this archive (e.g. a dated snapshot of the archive, for a
#                                bit-for-bit reproducible image); otherwise
#   debian_mirror [APT_ETC]      prints the URI of the build host's own Debian archive, read from
#                                APT_ETC (default /etc/apt): sources.list.d/*.sources (deb822),
#                                sources.list and sources.list.d/*.list (one-line format).
#
# The archive is the first `deb` source with a plain Debian suite (a codename such as bookworm, or
# stable/testing/unstable; not -security, -updates or -backports, not a third-party suite).
# Comments and disabled (Enabled: no) stanzas are ignored. Returns 1 when nothing matches.

DEBIAN_SUITES_RE='^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)$'

debian_mirror() {
  local etc="${1:-/etc/apt}" f uri
  local files=()
  for f in "$etc"/sources.list.d/*.sources; do [ -f "$f" ] && files+=("$f"); done
  if [ "${#files[@]}" -gt 0 ]; then
    uri=$(awk -v re="$DEBIAN_SUITES_RE" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "") {
          n = split(suites, s, " ")
          for (i = 1; i <= n; i++) if (s[i] ~ re) { split(uris, u, " "); print u[1]; found = 1; exit }
        }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        line = $0; sub(/[ \t]+$/, "", line)
        key = tolower(line); sub(/:.*/, "", key)
        val = line; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { if (!found) flush() }
    ' "${files[@]}")
    [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
  fi
  files=()
  for f in "$etc/sources.list" "$etc"/sources.list.d/*.list; do [ -f "$f" ] && files+=("$f"); done
  if [ "${#files[@]}" -gt 0 ]; then
    uri=$(awk -v re="$DEBIAN_SUITES_RE" '
      /^[ \t]*#/ { next }
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if (i + 1 <= NF && $(i + 1) ~ re) { print $i; exit }
      }
    ' "${files[@]}")
    [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
  fi
  return 1
}

# The archive to use: $DEBIAN_MIRROR, else the build host's; dies with a hint when neither is known.
resolve_debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "${DEBIAN_MIRROR%/}"; return 0; fi
  debian_mirror "$@" || {
    echo "no Debian archive found in the build host's apt sources: set DEBIAN_MIRROR=URL" >&2
    return 1
  }
}
