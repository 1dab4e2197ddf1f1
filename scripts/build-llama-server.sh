#!/usr/bin/env bash
# Builds llama.cpp's llama-server (and llama-bench, llama-batched-bench,
# llama-quantize) from the llama-cpp-python sdist on PyPI, which vendors
# llama.cpp, into the ivg cache, outside the checkout. Prints the bin folder.
#
# Pinned: the sdist by name, version and sha256; cmake by version from PyPI.
# Built for x86-64 with AVX2/FMA/F16C and without AVX-512 and AMX (AMX
# instructions fault at run time on this project's machines), so the same
# binaries run on every machine CI lands on. Idempotent and safe to run
# concurrently (flock); a finished build is reused.
set -euo pipefail

version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
cmake_version=3.31.6
url="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$version.tar.gz"
targets=(llama-server llama-bench llama-batched-bench llama-quantize)

if [ -n "${IVG_CACHE_DIR:-}" ]; then cache_root=$IVG_CACHE_DIR
elif [[ "${XDG_CACHE_HOME:-}" == /* ]]; then cache_root=$XDG_CACHE_HOME/ivg
else cache_root=$HOME/.cache/ivg; fi
root=$cache_root/llama.cpp
prefix=$root/$version
mkdir -p "$root"

(
  flock 9
  if [ -f "$prefix/.ivg-ready" ]; then exit 0; fi
  work=$(mktemp -d "$root/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "llama.cpp: fetching llama-cpp-python $version (sdist)" >&2
  curl -fsSL --retry 3 -o "$work/sdist.tar.gz" "$url"
  echo "$sha256  $work/sdist.tar.gz" | sha256sum -c --quiet -
  tar -xzf "$work/sdist.tar.gz" -C "$work"
  src=$work/llama_cpp_python-$version/vendor/llama.cpp

  python3 -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install --quiet "cmake==$cmake_version"
  cmake=$work/venv/bin/cmake

  echo "llama.cpp: building ${targets[*]} (AVX2, no AVX-512, no AMX)" >&2
  "$cmake" -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
    -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON >"$work/configure.log" 2>&1 \
    || { tail -40 "$work/configure.log" >&2; exit 1; }
  "$cmake" --build "$work/build" --config Release -j "$(nproc)" --target "${targets[@]}" \
    >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }

  rm -rf "$prefix"
  mkdir -p "$prefix/bin"
  for t in "${targets[@]}"; do cp "$work/build/bin/$t" "$prefix/bin/"; done
  "$prefix/bin/llama-server" --version >"$prefix/version.txt" 2>&1 || true
  touch "$prefix/.ivg-ready"
) 9>"$root/$version.lock"

echo "$prefix/bin"
