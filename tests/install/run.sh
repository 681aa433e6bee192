#!/usr/bin/env bash
# `make install` as a C or C++ user outside this tree meets it:
#
#     make test-install              (builds, then runs this with SOVERSION and VERSION)
#
# Installs into a temporary prefix, checks the layout (the versioned library and its
# SONAME, the links, the static library, the header, weft.pc, the CMake package), that
# DESTDIR stages and `make uninstall` removes every file, then builds
# examples/c/timers.c in a temporary directory outside the tree: with
# `pkg-config --cflags --libs weft`, with CMake's find_package(weft) against weft::weft
# and weft::weft_static, and with pkg-config's static flags. Each program must run and
# must take nothing from the source tree. pkg-config or cmake missing: that part is
# skipped with one line saying what to install (CI installs both).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

# The SONAME's number and the version, as the Makefile derives them (make test-install).
so=${SOVERSION:?run it through make test-install, which sets SOVERSION and VERSION}
version=${VERSION:?run it through make test-install, which sets SOVERSION and VERSION}
IFS=. read -r _ minor patch <<<"$version"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*" >&2; exit 1; }

# The program's output when it ran against the library it should have.
expect_timers() {
    local out
    out=$("$@") || fail "$* exited with status $?"
    grep -qx "weft $version" <<<"$out" || fail "$*: no 'weft $version' line in: $out"
    grep -qx "ticker done after 5 ticks" <<<"$out" || fail "$*: the ticker did not finish: $out"
}
needed_libweft() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(libweft[^]]*\)\]/\1/p'; }

# ---- the layout
prefix=$tmp/prefix
# A trailing slash, as users type it; a strict umask, as on hardened machines.
(umask 077 && make -s install PREFIX="$prefix/" >/dev/null)
lib=$prefix/lib
real=libweft.so.$so.$minor.$patch
[[ -f $lib/$real && ! -L $lib/$real ]] || fail "no $lib/$real"
[[ $(readlink "$lib/libweft.so.$so") == "$real" ]] || fail "libweft.so.$so does not link to $real"
[[ $(readlink "$lib/libweft.so") == "libweft.so.$so" ]] || fail "libweft.so does not link to libweft.so.$so"
soname=$(readelf -d "$lib/$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libweft.so.$so" ]] || fail "SONAME is '$soname', not libweft.so.$so"
ok "lib/$real with SONAME $soname, and the links libweft.so.$so and libweft.so"
[[ -f $lib/libweft.a ]] || fail "no libweft.a"
parts=$(cd include && echo weft/*.hpp)
[[ $parts == *weft/loop.hpp* ]] || fail "include/weft/*.hpp: weft.hpp's parts are missing from the tree"
for f in weft.h weft.hpp weft.cdef $parts; do
    cmp -s "include/$f" "$prefix/include/$f" || fail "include/$f differs from the tree's"
done
for f in pkgconfig/weft.pc cmake/weft/weftConfig.cmake cmake/weft/weftConfigVersion.cmake; do
    [[ -f $lib/$f ]] || fail "no lib/$f"
    if grep -n '@[a-z_]*@' "$lib/$f"; then fail "lib/$f has an unsubstituted @name@"; fi
done
for f in pkgconfig/weft.pc cmake/weft/weftConfig.cmake cmake/weft/weftConfigVersion.cmake libweft.a; do
    [[ $(stat -c %a "$lib/$f") == 644 ]] || fail "lib/$f has mode $(stat -c %a "$lib/$f"), not 644 (installed under umask 077)"
done
grep -qx "prefix=$prefix" "$lib/pkgconfig/weft.pc" || fail "weft.pc: $(grep '^prefix' "$lib/pkgconfig/weft.pc"), not prefix=$prefix"
ok "lib/libweft.a, include/weft.h, weft.hpp (and weft/*.hpp) and weft.cdef, lib/pkgconfig/weft.pc, lib/cmake/weft/"

# ---- DESTDIR stages under another root without changing the paths inside the files;
# uninstall removes every file install wrote
stage=$tmp/stage
make -s install DESTDIR="$stage" PREFIX=/usr >/dev/null
[[ -f $stage/usr/lib/$real && -f $stage/usr/include/weft.h ]] || fail "DESTDIR: nothing under $stage/usr"
grep -qx 'prefix=/usr' "$stage/usr/lib/pkgconfig/weft.pc" || fail "DESTDIR leaked into weft.pc"
if grep -rq "$stage" "$stage"; then fail "DESTDIR written into an installed file"; fi
make -s uninstall DESTDIR="$stage" PREFIX=/usr >/dev/null
if make -s install PREFIX=/usr LIBDIR=lib64 DESTDIR="$stage" >/dev/null 2>&1; then fail "a relative LIBDIR was accepted"; fi
left=$(find "$stage" -type f -o -type l)
[[ -z $left ]] || fail "make uninstall left: $left"
ok "DESTDIR=$stage PREFIX=/usr stages; make uninstall removes all of it"

# ---- a project outside the tree
project=$tmp/project
mkdir -p "$project"
cp examples/c/timers.c "$project/"
cd "$project"

# pkg-config
if command -v pkg-config >/dev/null; then
    export PKG_CONFIG_PATH=$lib/pkgconfig
    [[ $(pkg-config --modversion weft) == "$version" ]] || fail "pkg-config --modversion weft"
    [[ $(pkg-config --variable=cdef weft) == "$prefix/include/weft.cdef" ]] || fail "pkg-config --variable=cdef weft"
    flags=$(pkg-config --cflags --libs weft)
    [[ $flags != *"$REPO"* ]] || fail "pkg-config names the source tree: $flags"
    cc -std=c11 -Wall -Wextra -Werror timers.c $flags -o timers_pc
    [[ $(needed_libweft timers_pc) == "libweft.so.$so" ]] || fail "timers_pc needs '$(needed_libweft timers_pc)'"
    # ldd's output is captured first: `ldd | grep -q` under pipefail fails when grep
    # exits before ldd has written everything (SIGPIPE).
    loads=$(LD_LIBRARY_PATH=$lib ldd ./timers_pc)
    grep -q "libweft.so.$so => $lib/libweft.so.$so" <<<"$loads" \
        || fail "timers_pc does not load $lib/libweft.so.$so"
    LD_LIBRARY_PATH=$lib expect_timers ./timers_pc
    ok "pkg-config --cflags --libs weft: timers.c builds, needs libweft.so.$so, runs"

    # Static: the archive by its path, then what it needs (Libs.private).
    private=$(pkg-config --static --libs-only-l weft | tr ' ' '\n' | grep -vx -- '-lweft' | tr '\n' ' ')
    cc -std=c11 -Wall -Werror $(pkg-config --cflags weft) timers.c "$lib/libweft.a" $private -o timers_pc_static
    [[ -z $(needed_libweft timers_pc_static) ]] || fail "timers_pc_static still needs libweft"
    expect_timers ./timers_pc_static
    ok "pkg-config --static: timers.c links libweft.a with Libs.private ($private), runs"
    unset PKG_CONFIG_PATH
else
    echo "pkg-config not found: the pkg-config builds are skipped; apt-get install pkg-config"
fi

# CMake
if command -v cmake >/dev/null; then
    cat >CMakeLists.txt <<EOF
cmake_minimum_required(VERSION 3.13)
project(timers C)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)
find_package(weft ${version%.*} CONFIG REQUIRED)
add_executable(timers timers.c)
target_link_libraries(timers PRIVATE weft::weft)
add_executable(timers_static timers.c)
target_link_libraries(timers_static PRIVATE weft::weft_static)
EOF
    cmake -S . -B build -DCMAKE_PREFIX_PATH="$prefix" >cmake.log 2>&1 || { cat cmake.log; fail "cmake configure"; }
    cmake --build build >>cmake.log 2>&1 || { cat cmake.log; fail "cmake --build"; }
    if grep -q "$REPO" build/compile_commands.json; then fail "CMake compiled against the source tree"; fi
    [[ $(needed_libweft build/timers) == "libweft.so.$so" ]] || fail "CMake timers needs '$(needed_libweft build/timers)'"
    loads=$(ldd build/timers)
    grep -q "libweft.so.$so => $lib/libweft.so.$so" <<<"$loads" || fail "CMake timers does not load $lib"
    expect_timers build/timers
    ok "CMake find_package(weft ${version%.*}): weft::weft builds and runs (from CMake's build rpath)"
    [[ -z $(needed_libweft build/timers_static) ]] || fail "CMake timers_static still needs libweft"
    expect_timers build/timers_static
    ok "CMake weft::weft_static links libweft.a and runs"

    # The C++ consumer, examples/cpp/cmake: find_package(weft) gives weft.hpp too.
    if command -v c++ >/dev/null; then
        cmake -S "$REPO/examples/cpp/cmake" -B cppbuild -DCMAKE_PREFIX_PATH="$prefix" \
            -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >cmake.log 2>&1 || { cat cmake.log; fail "cmake configure examples/cpp/cmake"; }
        cmake --build cppbuild >>cmake.log 2>&1 || { cat cmake.log; fail "cmake --build examples/cpp/cmake"; }
        if grep -q -- "-I$REPO/include" cppbuild/compile_commands.json; then fail "the C++ tour compiled against the source tree's headers"; fi
        out=$(timeout 20 ./cppbuild/tour) || fail "the C++ tour (CMake) failed"
        grep -q "cpu task: sum = 15" <<<"$out" && grep -q " done$" <<<"$out" || fail "the C++ tour printed: $out"
        ok "CMake find_package(weft): examples/cpp/cmake builds the C++ tour with weft.hpp and runs it"
    else
        echo "no C++ compiler: the C++ CMake consumer is skipped; apt-get install g++"
    fi

    # The package is relocatable: move the whole prefix.
    mv "$prefix" "$tmp/moved"
    rm -rf build
    cmake -S . -B build -DCMAKE_PREFIX_PATH="$tmp/moved" >cmake.log 2>&1 || { cat cmake.log; fail "cmake after moving the prefix"; }
    cmake --build build >>cmake.log 2>&1 || { cat cmake.log; fail "cmake --build after moving the prefix"; }
    expect_timers build/timers
    mv "$tmp/moved" "$prefix"
    ok "CMake: the installed tree moved elsewhere still configures, builds and runs"

    # The version rule: newer or of another minor (while the major is 0) is refused.
    for wanted in 9.0 "0.$((minor + 1))"; do
        sed -i "s/^find_package(weft [^ ]*/find_package(weft $wanted/" CMakeLists.txt
        rm -rf build
        if cmake -S . -B build -DCMAKE_PREFIX_PATH="$prefix" >cmake.log 2>&1; then
            fail "find_package(weft $wanted) accepted version $version"
        fi
        grep -q "$version" cmake.log || { cat cmake.log; fail "find_package(weft $wanted): no version in the message"; }
    done
    ok "CMake: find_package(weft 9.0) and (weft 0.$((minor + 1))) are refused, naming $version"
else
    echo "cmake not found: the CMake builds are skipped; apt-get install cmake"
fi

echo "install: $passed checks passed"
