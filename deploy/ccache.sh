# Sourced by deploy/build.sh and deploy/test-sanitizers.sh. meson compiles
# through ccache when it is on PATH at `meson setup`; these settings make
# its cache hit across checkouts: paths are hashed relative to the
# checkout (CCACHE_BASEDIR) and the working directory is left out of the
# hash (CCACHE_NOHASHDIR), so a clean clone in another directory (CI)
# reuses what an earlier build of the same sources compiled. Debug info
# then names paths relative to the build directory, which gdb resolves from
# there. Without ccache nothing changes.
export CCACHE_BASEDIR="$PWD"
export CCACHE_NOHASHDIR=true
# Three trees (plain, ASan, TSan) of ~1 GB of objects each.
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-12G}"
