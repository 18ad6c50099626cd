#!/usr/bin/env bash
# System packages the C++ reference (examples/cpp) builds against: libjpeg-turbo (JPEG decode), libexif
# (the EXIF orientation tag), nlohmann-json (dsedge.json), plus cmake and g++. OpenVINO's C++ runtime
# comes from the `openvino` wheel already in the venv. Idempotent and quiet: installs only what is missing.
set -euo pipefail
PKGS=(cmake g++ make libjpeg-dev libexif-dev nlohmann-json3-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
echo "cpp_deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
