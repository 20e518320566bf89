#!/usr/bin/env bash
# Everything the GPU machines must prove, in one go: single-GPU tests, MPI tests at 2 and
# at all local GPUs, the demo, compute-sanitizer, and (if asked) epg-bench.
#
#   scripts/gpu-check.sh <bin-dir> <log-dir> [stages...]
#   stages: gpu mpi domains demo twohosts watchdog failmodes endurance sanitize bench compare probe links
#           expertmajor fp8 mutants
#           (demo: at every GPU count, one domain and every smaller domain size)
#           (default: gpu mpi domains demo sanitize)
#
# expertmajor: the expert-major and placement MPI tests at every GPU count, and at np 2 with
# domain size 1 (without the 1000-replay test), the demo with --layout expert-major in both forms, and the sanitizers on the permute, the
# un-permute and a placement table.
#
# mutants: tests that must fail. EPG_MUTANTS names a folder of epgraph_mpi_tests builds, each
# with one deliberate bug; each runs at 2 ranks with EPG_MUTANT_FILTER and PASSes only if the
# tests catch it (a non-zero exit, not a timeout).
#
# domains: the MPI tests that take the domain size from the run (EPGRAPH_TEST_DOMAIN_SIZE), at
# every domain size smaller than the rank count (4 GPUs: 2 and 1; 2 GPUs: 1), and
# compute-sanitizer's memcheck at 2 ranks with domain size 1.
#
# bench: epg-bench's standard sweep (EPG_BENCH_ARGS) at 64 CTAs (EPG_BENCH_CTAS), then the CTA
# sweep 8 .. 64 (EPG_CTA_SWEEP_ARGS; EPG_CTA_SWEEP=0 skips it), at every GPU count.
#
# compare: A/B timing of builds. EPG_COMPARE holds "name=dir" pairs; each dir has an
# epg-bench. They run interleaved, EPG_COMPARE_ROUNDS times (default 2), at every GPU count
# (or at EPG_COMPARE_NP) with EPG_BENCH_ARGS, so that drift on the machine hits every build
# alike. "name=dir@--option=value" adds an option for that entry only (e.g. the same build
# with --deadline=0); "@--a=1@--b=2" adds several; "@env:NCCL_X=1" sets a variable on every rank.
# The stage ends with scripts/compare_ab.py's table of the files it wrote, against the first
# build, in <logs>/compare_table.log (medians, differences, disturbed measurements left out).
#
# <bin-dir> holds the executables built on the development machine (scripts/stage-gpu.sh).
# They are run against the NCCL whose headers they were compiled with (2.28.9, the PyTorch
# wheel's on the GPU machines): EPGRAPH_NCCL_LIB names its folder; without it, the wheel is
# looked for in the Python environment EPGRAPH_PYTHON_ENV (default /opt/torch/.venv, where
# the lent GPU machines keep it).
set -uo pipefail
bin=${1:?bin dir}; logs=${2:?log dir}; shift 2
stages=${*:-gpu mpi domains demo sanitize}
mkdir -p "$logs"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
wheel=$(ls -d "${EPGRAPH_PYTHON_ENV:-/opt/torch/.venv}"/lib/python3*/site-packages/nvidia/nccl/lib 2>/dev/null | head -1)
export LD_LIBRARY_PATH=${EPGRAPH_NCCL_LIB:-$wheel}:${LD_LIBRARY_PATH:-}
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
summary=()
record() { summary+=("$(printf '%-40s %-8s %s' "$1" "$2" "$3")"); }
run() {  # name, timeout, command...
  local name=$1 limit=$2; shift 2
  local log="$logs/${name//[^a-zA-Z0-9_.-]/_}.log" start=$SECONDS
  timeout -k 10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local verdict=PASS; [ $rc = 0 ] || verdict="FAIL($rc)"; [ $rc = 77 ] && verdict=SKIP; [ $rc = 124 ] && verdict=TIMEOUT
  record "$name" "$verdict" "$((SECONDS - start))s  $(grep -E 'PASSED|FAILED|failures|All outputs|tests on|cells compared' "$log" | tail -1 | cut -c1-70)"
  [ "$verdict" = PASS ] || tail -25 "$log"
  return $rc
}
echo "== $gpus x $card; NCCL from ${LD_LIBRARY_PATH%%:*}"
nvidia-smi topo -m > "$logs/topo.txt" 2>&1
np_list="2"; [ "$gpus" -ge 4 ] && np_list="2 $gpus"

for stage in $stages; do
  case $stage in
    gpu) run gpu_tests 300 "$bin/epgraph_gpu_tests" ;;
    mpi) for np in ${EPG_MPI_NP:-$np_list}; do  # EPG_MPI_FILTER: a gtest filter (default: every test); EPG_MPI_TIMEOUT: s per run; EPG_MPI_NP: rank counts
        run "mpi_tests_np$np" "${EPG_MPI_TIMEOUT:-600}" mpirun -np "$np" --bind-to none "$bin/epgraph_mpi_tests" \
          --gtest_filter="${EPG_MPI_FILTER:-*}"
      done ;;
    domains)
      domain_tests='*Dispatch.*:*Combine.*:StepGraph.*:Safety.AFailingExpert*:RandomShapes.*'
      for np in $np_list; do
        for L in $(seq $((np / 2)) -1 1); do
          [ $((np % L)) = 0 ] || continue
          run "mpi_tests_np${np}_L$L" 600 mpirun -np "$np" --bind-to none -x EPGRAPH_TEST_DOMAIN_SIZE="$L" \
            "$bin/epgraph_mpi_tests" --gtest_filter="$domain_tests"
        done
      done
      run sanitize_memcheck_np2_L1 600 mpirun -np 2 --bind-to none -x EPGRAPH_TEST_DOMAIN_SIZE=1 compute-sanitizer \
        --tool memcheck --report-api-errors no --error-exitcode 9 "$bin/epgraph_mpi_tests" \
        --gtest_filter='*Dispatch*uniform*:*rows_not*:*Combine*h2880*:*fp32*:Safety.AFailingExpert*:Domains.AFailing*' ;;
    demo)  # EPG_DEMO_NP: rank counts; EPG_DEMO_L: domain sizes (default: N, then every smaller divisor);
           # EPG_DEMO_ARGS: more epg-demo options for the runs with several domains
      for np in ${EPG_DEMO_NP:-$np_list}; do
        for L in ${EPG_DEMO_L:-$(seq "$np" -1 1)}; do
          [[ $L =~ ^[1-9][0-9]*$ ]] || { echo "demo: EPG_DEMO_L: '$L' is not a domain size"; continue; }
          [ $((np % L)) = 0 ] || continue
          if [ "$L" = "$np" ]; then
            run "demo_np$np" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --steps 200 --tokens 256
            tail -6 "$logs/demo_np$np.log"
            continue
          fi
          read -ra demo_args <<< "${EPG_DEMO_ARGS:-}"
          run "demo_np${np}_L$L" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --steps 50 --tokens 256 \
            --domain-size "$L" ${demo_args[@]+"${demo_args[@]}"}
          tail -3 "$logs/demo_np${np}_L$L.log"
        done
      done ;;
    expertmajor)  # EPG_EM_DEMO=0 skips the demos; EPG_EM_TOOLS: the sanitizers (default all three)
      for np in $np_list; do
        run "expert_major_np$np" 600 mpirun -np "$np" --bind-to none "$bin/epgraph_mpi_tests" \
          --gtest_filter='ExpertMajorStep.*:Placement.*'
        [ "${EPG_EM_DEMO:-1}" = 0 ] && continue
        for form in packed masked packed-indexed; do  # packed-indexed: rows gathered from the receive buffers
          run "demo_np${np}_expert_major_$form" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --steps 200 \
            --tokens 256 --layout expert-major --form "${form%-indexed}" $([[ $form == *-indexed ]] && echo --indexed)
          tail -4 "$logs/demo_np${np}_expert_major_$form.log"
        done
      done
      run expert_major_np2_L1 600 mpirun -np 2 --bind-to none -x EPGRAPH_TEST_DOMAIN_SIZE=1 "$bin/epgraph_mpi_tests" \
        --gtest_filter='ExpertMajorStep.*:Placement.*:-*Thousand*'
      for tool in ${EPG_EM_TOOLS:-memcheck racecheck synccheck}; do
        run "sanitize_${tool}_expert_major_np2" 600 mpirun -np 2 --bind-to none compute-sanitizer --tool "$tool" \
          --report-api-errors no --error-exitcode 9 "$bin/epgraph_mpi_tests" \
          --gtest_filter='ExpertMajorStep.TheUnpermute*:ExpertMajorStep.AMasked*:ExpertMajorStep.ARepeated*:Placement.ATable*'
      done ;;
    fp8)  # issue 15: the quantizer and the reduced combines on one GPU; the quantizing dispatch and the
          # reduced combines at every GPU count and at np 2 with domain size 1 (the staged rows); sanitizers
          # on both; the demo with each reduced precision (EPG_FP8_DEMO=0 skips it)
      fp8_gpu='SingleRank.*Quantiz*:SingleRank.*Fp8*:SingleRank.*Bf16*'
      fp8_mpi='*QuantizingDispatch.*:*Fp8Combine.*:*Fp8CombinePlanning.*'
      run fp8_gpu 300 "$bin/epgraph_gpu_tests" --gtest_filter="$fp8_gpu"
      for np in $np_list; do
        run "fp8_np$np" 600 mpirun -np "$np" --bind-to none "$bin/epgraph_mpi_tests" --gtest_filter="$fp8_mpi"
        [ "${EPG_FP8_DEMO:-1}" = 0 ] && continue
        run "demo_np${np}_fp8" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --steps 100 --tokens 256 \
          --quantize fp8 --combine-precision fp8 --host-check-every 25
        tail -3 "$logs/demo_np${np}_fp8.log"
        run "demo_np${np}_ue8m0_fp8" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --steps 50 --tokens 256 \
          --quantize fp8-ue8m0 --combine-precision fp8 --host-check-every 25
        tail -3 "$logs/demo_np${np}_ue8m0_fp8.log"
        run "demo_np${np}_fp8_expert_major" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --steps 50 \
          --tokens 256 --quantize fp8 --layout expert-major --host-check-every 25
        tail -3 "$logs/demo_np${np}_fp8_expert_major.log"
        run "demo_np${np}_bf16_of_fp32" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --steps 50 --tokens 256 \
          --dtype fp32 --combine-precision bf16 --host-check-every 25
        tail -3 "$logs/demo_np${np}_bf16_of_fp32.log"
      done
      run fp8_np2_L1 600 mpirun -np 2 --bind-to none -x EPGRAPH_TEST_DOMAIN_SIZE=1 "$bin/epgraph_mpi_tests" \
        --gtest_filter="$fp8_mpi"
      for tool in ${EPG_FP8_TOOLS:-memcheck racecheck synccheck}; do
        run "sanitize_${tool}_fp8_gpu" 600 compute-sanitizer --tool "$tool" --report-api-errors no --error-exitcode 9 \
          "$bin/epgraph_gpu_tests" --gtest_filter="$fp8_gpu"
      done
      run sanitize_memcheck_fp8_np2_L1 600 mpirun -np 2 --bind-to none -x EPGRAPH_TEST_DOMAIN_SIZE=1 compute-sanitizer \
        --tool memcheck --report-api-errors no --error-exitcode 9 "$bin/epgraph_mpi_tests" \
        --gtest_filter='*QuantizingDispatch*partial*:*QuantizingDispatch*tiny*:*whole_tokens*:*sliced_2048*:*Fp8Combine*k1*:*Fp8Combine*one_rank*:*Fp8Combine*bf16_of_fp32_skewed*' ;;
    mutants)
      for mutant in "${EPG_MUTANTS:?folder of mutant builds}"/*; do
        name=$(basename "$mutant") log="$logs/mutant_$(basename "$mutant").log"
        timeout -k 10 "${EPG_MUTANT_TIMEOUT:-180}" mpirun -np 2 --bind-to none "$mutant" --gtest_filter="${EPG_MUTANT_FILTER:-*}" >"$log" 2>&1
        rc=$?
        caught=$(grep -a 'FAILED  \]' "$log" | sed 's/.*\] //' | sort -u | tr '\n' ' ' | cut -c1-90)
        if [ $rc != 0 ] && [ $rc != 124 ] && [ -n "$caught" ]; then record "mutant_$name" PASS "caught: $caught"
        else record "mutant_$name" FAIL "rc $rc, not caught"; fi
      done ;;
    twohosts)  # NCCL sees two hosts (scripts/as-two-hosts.sh): --domain-size 0 must resolve to half the ranks
      for np in $np_list; do :; done
      run "twohosts_np$np" 90 mpirun -np "$np" --bind-to none "$(dirname "$0")/as-two-hosts.sh" "$bin/epg-demo" \
        --steps 20 --tokens 128 --domain-size 0
      if grep -q "NVLink domains: 2 of $((np / 2)) rank(s)" "$logs/twohosts_np$np.log"; then
        record "twohosts_np${np}_domains" PASS "domain size 0 resolved to $((np / 2))"
      else
        record "twohosts_np${np}_domains" FAIL "$(grep -h 'NVLink domains' "$logs/twohosts_np$np.log" | head -1)"
      fi ;;
    links)  # tests/probes/link_rates.cu: NVLink rates of GPUs 0 and 1 by SM count, op and direction
            # (EPG_LINKS_ARGS: its options); the rows go to links.csv
      run links 120 bash -c "\"\$0\" \$1 > \"\$2\"" "$bin/epgraph_probe_link_rates" "${EPG_LINKS_ARGS:-}" "$logs/links.csv"
      tr , "\t" < "$logs/links.csv" | head -120 ;;
    probe)  # tests/probes/first_contact.cpp: how a first NCCL call with a missing peer can end
      for mode in revoke-blocking abort-nonblocking revoke-nonblocking; do
        run "probe_$mode" 60 mpirun -np 2 --bind-to none "$bin/epgraph_probe_first_contact" "$mode"
        grep -h "^probe" "$logs/probe_$mode.log"
      done ;;
    failmodes) run failure_modes 300 "$(dirname "$0")/../tests/gpu/failure_modes_test.sh" "$bin"; cat "$logs/failure_modes.log" ;;
    watchdog) run watchdog_np2 240 "$(dirname "$0")/../tests/mpi/watchdog_test.sh" "$bin/epg-demo" mpirun ;;
    endurance)
      for np in $np_list; do :; done  # the largest GPU count
      run "endurance_np$np" 600 mpirun -np "$np" --bind-to none "$bin/epg-demo" --variant zero-copy \
        --steps "${EPG_ENDURANCE_STEPS:-100000}" --host-check-every 5000 --tokens 256
      tail -5 "$logs/endurance_np$np.log" ;;
    sanitize)  # EPG_SANITIZE_GPU=0 skips the single-GPU runs
      for tool in memcheck racecheck synccheck; do  # single GPU: the whole pipeline at EP 1
        [ "${EPG_SANITIZE_GPU:-1}" = 0 ] && break
        run "sanitize_${tool}_gpu" 600 compute-sanitizer --tool "$tool" --report-api-errors no --error-exitcode 9 "$bin/epgraph_gpu_tests" \
          --gtest_filter='SingleRank.*:-SingleRank.WorkspaceThatCannotFit*'
      done
      # The fault paths too: a collective out of step (refused launches, NaN output, stop words).
      run sanitize_memcheck_np2 600 mpirun -np 2 --bind-to none compute-sanitizer --tool memcheck --report-api-errors no \
        --error-exitcode 9 "$bin/epgraph_mpi_tests" \
        --gtest_filter='*Dispatch*uniform*:*rows_not*:*chunks_of*:*claimed*:*Combine*h2880*:*Combine*small_grid*:*fp32*:Safety.AnExtraDispatch*:Safety.AFailingExpert*:Safety.Overlapping*'
      for tool in racecheck synccheck; do
        run "sanitize_${tool}_np2" 600 mpirun -np 2 --bind-to none compute-sanitizer --tool "$tool" \
          --report-api-errors no --error-exitcode 9 "$bin/epgraph_mpi_tests" \
          --gtest_filter='*Dispatch*uniform*:*chunks_of*:*claimed*:*Combine*h2880*:*Combine*small_grid*:Safety.AnExtraDispatch*'
      done ;;
    bench)
      for np in $np_list; do
        for ctas in ${EPG_BENCH_CTAS:-64}; do
          run "bench_np${np}_c$ctas" 600 mpirun -np "$np" --bind-to none "$bin/epg-bench" --ctas "$ctas" \
            --out "$logs/bench_np${np}_c$ctas" ${EPG_BENCH_ARGS:-}
          tail -12 "$logs/bench_np${np}_c$ctas.log"
        done
      done
      python3 "$(dirname "$0")/plot_bench.py" "$logs/bench.png" "$logs"/bench_np*.csv > "$logs/plot.log" 2>&1 \
        || tail -5 "$logs/plot.log"
      # The SM budget (issue 16): BF16 at 8 to 64 CTAs, both routings. EPG_CTA_SWEEP=0 skips it.
      for np in $np_list; do
        [ "${EPG_CTA_SWEEP:-1}" = 0 ] && break
        run "ctas_np${np}" 600 mpirun -np "$np" --bind-to none "$bin/epg-bench" --out "$logs/ctas_np${np}" \
          ${EPG_CTA_SWEEP_ARGS:---ctas 8,16,24,32,64 --payload bf16 --quantize none --combine-precision exact}
      done ;;
    compare)
      written=()  # this stage's CSVs (the folder may hold an earlier run's)
      for np in ${EPG_COMPARE_NP:-$np_list}; do
        for round in $(seq "${EPG_COMPARE_ROUNDS:-2}"); do
          for pair in ${EPG_COMPARE:?name=dir pairs}; do
            name=${pair%%=*} dir=${pair#*=} items=() extra=() envs=()
            [[ $dir == *@* ]] && { IFS=@ read -ra items <<< "${dir#*@}"; dir=${dir%%@*}; }
            for item in ${items[@]+"${items[@]}"}; do  # "env:VAR=value" goes to every rank's environment
              if [[ $item == env:?*=* ]]; then envs+=(-x "${item#env:}")
              elif [[ $item == env:* ]]; then echo "compare: '$item' is not env:NAME=VALUE"; continue 2
              else extra+=("$item"); fi
            done
            run_name="compare_np${np}_${name}_r$round"
            run "$run_name" 300 mpirun -np "$np" --bind-to none ${envs[@]+"${envs[@]}"} \
              "$dir/epg-bench" --out "$logs/$run_name" ${EPG_BENCH_ARGS:-} ${extra[@]+"${extra[@]}"}
            [ -f "$logs/$run_name.csv" ] && written+=("$logs/$run_name.csv")
          done
        done
      done
      # The table against the first build (compare_ab.py; the CSVs stay the record).
      for first in $EPG_COMPARE; do break; done
      [ ${#written[@]} -gt 0 ] && run compare_table 60 python3 "$(dirname "$0")/compare_ab.py" --base "${first%%=*}" \
        "${written[@]}" ;;
  esac
done
echo
echo "== summary ($gpus x $card)"
printf '%s\n' "${summary[@]}"
