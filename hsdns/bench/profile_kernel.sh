#!/bin/sh
# Builds the eBPF object once per stage stop (hsdns-ebpf/src/profile.rs)
# into $OUT (default /tmp/hsdns-profile): stop1.o .. stop10.o, and full.o
# without a stop. The flags are what aya-build passes (bpf_target_arch is
# the host's, x86_64 here).
set -eu
OUT=${OUT:-/tmp/hsdns-profile}
STAGES=${STAGES:-"1 2 3 4 5 6 7 8 9 10"}
cd "$(dirname "$0")/../../hsdns-ebpf"
mkdir -p "$OUT"
build() {
    RUSTC_BOOTSTRAP=1 \
    CARGO_ENCODED_RUSTFLAGS="$(printf '%s\037%s\037%s' '--cfg=bpf_target_arch="x86_64"' -Cdebuginfo=2 -Clink-arg=--btf)" \
    cargo +stable build --quiet --package hsdns-ebpf --bins --release \
        --target bpfel-unknown-none -Z build-std=core --target-dir "$OUT/target"
    cp "$OUT/target/bpfel-unknown-none/release/hsdns" "$OUT/$1"
}
unset HSDNS_STOP_AFTER
build full.o
for n in $STAGES; do
    HSDNS_STOP_AFTER=$n build "stop$n.o"
done
ls -l "$OUT"/*.o
