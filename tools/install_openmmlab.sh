#!/usr/bin/env bash
# Install the OpenMMLab stack visionattn's adapters target, for the torch that is already installed:
#   mmengine 0.10.7, mmcv 2.1.0 *with its compiled ops*, mmdet 3.3.0, mmsegmentation 1.2.2.
#
# Idempotent: when the stack already imports (mmcv.ops included, compiled against this torch) it exits at once.
#
# mmcv has no wheel for recent torch on PyPI, so mmcv 2.1.0 comes from a wheelhouse:
#   1. $VISIONATTN_MMCV_WHEELHOUSE, when set (a directory holding mmcv-2.1.0-<pytag>-*.whl), e.g. a prebuilt one;
#   2. the cache ~/.cache/visionattn/wheels/torch-<torch version>-<python tag>/ (or under $VISIONATTN_CACHE);
#   3. else mmcv 2.1.0 is compiled from the PyPI sdist into that cache (about 10-17 min on 2 cores, once).
# The compile needs two fixes (see ../shared/reference/openmmlab.md): mmcv's setup.py forces -std=c++17 while
# torch >= 2.10 headers need C++20, so the build runs through a compiler wrapper that swaps the flag; and its
# setup.py imports pkg_resources, so setuptools stays < 81 and the build runs without isolation.
#
# Environment: PYTHON (default python), VISIONATTN_MMCV_WHEELHOUSE, VISIONATTN_CACHE, MAX_JOBS (default: CPU count).
set -euo pipefail

PYTHON="${PYTHON:-python}"
MMENGINE_VERSION=0.10.7
MMCV_VERSION=2.1.0
MMDET_VERSION=3.3.0
MMSEG_VERSION=1.2.2

log() { echo "[install_openmmlab] $*"; }

# Resolve a relative wheelhouse against the directory the script was called from, before anything changes it.
WHEELHOUSE_ENV=""
if [[ -n "${VISIONATTN_MMCV_WHEELHOUSE:-}" ]]; then
    WHEELHOUSE_ENV="$VISIONATTN_MMCV_WHEELHOUSE"
    if [[ -d "$WHEELHOUSE_ENV" ]]; then
        WHEELHOUSE_ENV="$(cd "$WHEELHOUSE_ENV" && pwd)"
    fi
fi

stack_ok() {
    "$PYTHON" - "$MMENGINE_VERSION" "$MMCV_VERSION" "$MMDET_VERSION" "$MMSEG_VERSION" <<'EOF' >/dev/null 2>&1
import sys
want_engine, want_mmcv, want_det, want_seg = sys.argv[1:5]
import mmengine, mmcv, mmdet, mmseg
from mmcv.ops import nms, roi_align, point_sample  # needs mmcv._ext built for this torch
import ftfy, regex, cv2  # mmseg imports these without declaring them
ok = (mmengine.__version__ == want_engine and mmcv.__version__ == want_mmcv
      and mmdet.__version__ == want_det and mmseg.__version__ == want_seg)
sys.exit(0 if ok else 1)
EOF
}

mmcv_ok() {
    "$PYTHON" -c "import mmcv; from mmcv.ops import nms, roi_align, point_sample; \
import sys; sys.exit(0 if mmcv.__version__ == '$MMCV_VERSION' else 1)" >/dev/null 2>&1
}

if stack_ok; then
    log "OpenMMLab stack already installed (mmengine $MMENGINE_VERSION, mmcv $MMCV_VERSION with ops," \
        "mmdet $MMDET_VERSION, mmseg $MMSEG_VERSION)"
    exit 0
fi

start=$(date +%s)
TORCH_VERSION="$("$PYTHON" -c "import torch; print(torch.__version__.split('+')[0])")"
PY_TAG="$("$PYTHON" -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")"
CACHE_ROOT="${VISIONATTN_CACHE:-$HOME/.cache/visionattn}"
WHEELHOUSE_CACHE="$CACHE_ROOT/wheels/torch-$TORCH_VERSION-$PY_TAG"
log "torch $TORCH_VERSION, python tag $PY_TAG"

# Build prerequisites first: torch needs setuptools >= 77.0.3, mmcv's setup.py needs pkg_resources (< 81).
"$PYTHON" -m pip install -q "setuptools>=77.0.3,<81" wheel ninja
"$PYTHON" -m pip install -q "mmengine==$MMENGINE_VERSION" opencv-python-headless addict yapf psutil ftfy regex

find_wheel() {  # $1: directory; prints the mmcv wheel for this Python there, if any
    local dir="$1"
    [[ -d "$dir" ]] || return 1
    local whl
    whl="$(ls "$dir"/mmcv-"$MMCV_VERSION"-"$PY_TAG"-"$PY_TAG"-*.whl 2>/dev/null | head -n 1 || true)"
    [[ -n "$whl" ]] || return 1
    echo "$whl"
}

install_wheel() {  # $1: wheel path; succeeds only when the installed ops import with this torch
    log "installing $1"
    "$PYTHON" -m pip install -q --force-reinstall --no-deps "$1" && mmcv_ok
}

compile_mmcv() {  # builds mmcv-$MMCV_VERSION into $WHEELHOUSE_CACHE
    local tmp real_cxx
    tmp="$(mktemp -d)"
    real_cxx="${CXX:-c++}"
    # The wrapper only swaps the language standard; everything else goes to the real compiler unchanged.
    cat > "$tmp/cxx20" <<EOF
#!/usr/bin/env bash
args=()
for a in "\$@"; do
    case "\$a" in
        -std=c++14|-std=c++17|-std=gnu++14|-std=gnu++17) args+=("-std=c++20") ;;
        *) args+=("\$a") ;;
    esac
done
exec "$real_cxx" "\${args[@]}"
EOF
    chmod +x "$tmp/cxx20"
    local nvcc_env=()
    if "$PYTHON" -c "import sys, torch; from torch.utils.cpp_extension import CUDA_HOME; \
sys.exit(0 if (torch.version.cuda and CUDA_HOME and torch.cuda.is_available()) else 1)" 2>/dev/null; then
        local real_nvcc
        real_nvcc="$("$PYTHON" -c "import os; from torch.utils.cpp_extension import CUDA_HOME; \
print(os.environ.get('PYTORCH_NVCC') or os.path.join(CUDA_HOME, 'bin', 'nvcc'))")"
        sed "s#exec \"$real_cxx\"#exec \"$real_nvcc\"#" "$tmp/cxx20" > "$tmp/nvcc20"
        chmod +x "$tmp/nvcc20"
        nvcc_env=(PYTORCH_NVCC="$tmp/nvcc20" FORCE_CUDA=1)
        log "CUDA found: building the CUDA ops too (nvcc $real_nvcc)"
    fi
    mkdir -p "$WHEELHOUSE_CACHE"
    log "compiling mmcv $MMCV_VERSION with ops into $WHEELHOUSE_CACHE (first time only; ~10-17 min on 2 cores)"
    env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CXX="$tmp/cxx20" "${nvcc_env[@]}" \
        "$PYTHON" -m pip wheel --no-build-isolation --no-deps --no-cache-dir -w "$tmp/out" "mmcv==$MMCV_VERSION"
    # Move in atomically so an interrupted build never leaves a half-written wheel in the cache.
    local built
    built="$(ls "$tmp"/out/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)"
    mv "$built" "$WHEELHOUSE_CACHE/.tmp-$(basename "$built")"
    mv "$WHEELHOUSE_CACHE/.tmp-$(basename "$built")" "$WHEELHOUSE_CACHE/$(basename "$built")"
    rm -rf "$tmp"
}

if ! mmcv_ok; then
    installed=0
    for dir in "$WHEELHOUSE_ENV" "$WHEELHOUSE_CACHE"; do
        [[ -n "$dir" ]] || continue
        if whl="$(find_wheel "$dir")"; then
            if install_wheel "$whl"; then installed=1; break; fi
            log "WARNING: $whl does not work with torch $TORCH_VERSION; trying the next source"
        else
            log "no mmcv $MMCV_VERSION wheel for $PY_TAG in $dir"
        fi
    done
    if [[ $installed -eq 0 ]]; then
        compile_mmcv
        whl="$(find_wheel "$WHEELHOUSE_CACHE")"
        install_wheel "$whl" || { log "ERROR: the freshly built $whl does not import"; exit 1; }
    fi
fi

# mmdet / mmseg do not declare mmcv or mmengine as dependencies, so pip leaves the mmcv installed above alone.
"$PYTHON" -m pip install -q "mmdet==$MMDET_VERSION" "mmsegmentation==$MMSEG_VERSION"

if ! stack_ok; then
    log "ERROR: the stack does not import; run:  $PYTHON -c 'import mmcv.ops, mmdet, mmseg'"
    exit 1
fi
log "done in $(( $(date +%s) - start )) s"
