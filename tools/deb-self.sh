#!/usr/bin/env bash
# deb-self.sh [OUT_DIR]: build debship itself as a Debian package, python3-debship_<version>-1_all.deb,
# into OUT_DIR (default dist/), with stdeb and Debian's own python3 toolchain (installed with apt when
# missing; sudo is asked for only then).
#
# Everything happens in a temp dir: a copy of pyproject.toml, README.md, builder/ and the templates,
# plus what stdeb needs and the repository does not keep (a setup.py shim, tools/deb-self/*).  The
# repository is left as it was: no deb_dist/, no *.egg-info.  The version is pyproject.toml's.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)"

BUILD_DEBS=(python3-stdeb python3-all python3-setuptools dh-python debhelper dpkg-dev fakeroot
            help2man python3-click python3-jinja2 python3-paramiko python3-debian)
installed=$(dpkg-query -W -f='${db:Status-Abbrev}\n' "${BUILD_DEBS[@]}" 2>/dev/null | grep -c '^ii' || true)
if [ "$installed" != "${#BUILD_DEBS[@]}" ]; then
    if [ "$(id -u)" = 0 ]; then bash "$repo/tools/ensure-debs.sh" "${BUILD_DEBS[@]}"
    else sudo bash "$repo/tools/ensure-debs.sh" "${BUILD_DEBS[@]}"; fi
fi

# Debian's python3 and dh tools, not a pyenv/venv python that happens to be first on PATH.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
py=/usr/bin/python3
work="$(mktemp -d "${TMPDIR:-/tmp}/debship-deb-self.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$work/src"

stage() {   # the sources setuptools needs, adapted to Debian 12's setuptools 66
    mkdir -p "$src/builder/templates"
    cp "$repo/pyproject.toml" "$repo/README.md" "$src/"
    (cd "$repo" && find builder -name '*.py' -not -path '*/__pycache__/*' -exec cp --parents {} "$src/" \;)
    cp "$repo"/debian/*.j2 "$src/builder/templates/"   # stdeb writes its own debian/ in $src
    cp "$repo"/tools/deb-self/{stdeb.cfg,copyright,description.txt} "$src/"
    printf 'from setuptools import setup\nsetup()\n' >"$src/setup.py"
    # setuptools 66 does not know PEP 639's `license = "MIT"`;
    # the long description is description.txt (stdeb keeps README's first 20 lines, in markdown).
    edit 's/^license = "MIT"$/license = {text = "MIT"}/'
    edit 's/^readme = "README.md"$/readme = {file = "description.txt", content-type = "text\/plain"}/'
}

edit() {    # one sed on the staged pyproject.toml that must change it, or pyproject.toml moved on
    local before; before="$(cat "$src/pyproject.toml")"
    sed -i "$1" "$src/pyproject.toml"
    if [ "$before" = "$(cat "$src/pyproject.toml")" ]; then
        echo "deb-self.sh: pyproject.toml no longer matches '$1'; update tools/deb-self.sh" >&2
        exit 1
    fi
}

entry() { case "$1" in debship) echo main ;; *) echo "${1//-/_}" ;; esac; }   # as in [project.scripts]

summary() {
    case "$1" in
        debship) echo "bundle scripts, configs and systemd units into a .deb and ship it over SSH" ;;
        build-deb) echo "bundle scripts, configs and systemd units into one reproducible .deb" ;;
        ship) echo "install a .deb on hosts over SSH with apt, check its services, roll back" ;;
    esac
}

manpages() {    # help2man pages from each command's --help (lintian: no-manual-page otherwise)
    local version="$1" man="$2" cmd
    mkdir -p "$man" "$work/bin"
    for cmd in debship build-deb ship; do
        printf '#!%s\nimport sys\nsys.path.insert(0, "%s")\nfrom builder.cli import %s\nsys.exit(%s())\n' \
            "$py" "$src" "$(entry "$cmd")" "$(entry "$cmd")" >"$work/bin/$cmd"
        chmod +x "$work/bin/$cmd"
        help2man --no-info --version-string="$version" --name="$(summary "$cmd")" \
            --output="$man/$cmd.1" "$work/bin/$cmd"
    done
}

stage
version="$(cd "$src" && "$py" setup.py --version 2>/dev/null | tail -n 1)"
cd "$src"
"$py" setup.py --command-packages=stdeb.command sdist_dsc --compat 13 --dist-dir "$work/deb_dist" \
    >"$work/stdeb.log" 2>&1 || { cat "$work/stdeb.log" >&2; exit 1; }
pkg="$work/deb_dist/debship-$version"
# setuptools 66 reports no url as "None"; stdeb cuts pyproject's description at 60 characters
sed -i -e '/^Homepage: None$/d' -e "s/^Description: .*/Description: $(summary debship)/" "$pkg/debian/control"
manpages "$version" "$pkg/debian/man"
printf 'debian/man/%s.1\n' debship build-deb ship >"$pkg/debian/python3-debship.manpages"
(cd "$pkg" && dpkg-buildpackage -rfakeroot -b -uc -us >"$work/dpkg-buildpackage.log" 2>&1) \
    || { tail -n 40 "$work/dpkg-buildpackage.log" >&2; exit 1; }
deb="$(cd "$work/deb_dist" && ls python3-debship_*_all.deb)"
cp "$work/deb_dist/$deb" "$out/.$deb.tmp"
mv -f "$out/.$deb.tmp" "$out/$deb"
echo "built $out/$deb ($(stat -c %s "$out/$deb") bytes)"
