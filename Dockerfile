# syntax=docker/dockerfile:1
# Image of registry-operator: a release build on Debian 12 (bookworm), copied into the
# distroless cc image, which has glibc and libgcc but no shell or package manager.
#   docker build -t registry-operator:dev .

# The tag matches the toolchain pinned in rust-toolchain.toml, so rustup uses the
# image's toolchain.
FROM rust:1.95.0-bookworm AS builder
# rdkafka builds its bundled librdkafka with make and links OpenSSL and zlib
# dynamically.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/registry-operator /out/registry-operator
# Copy the shared libraries the binary links beyond glibc and libgcc, from where `ldd`
# finds them: libssl and libcrypto of OpenSSL 3, and zlib. The distroless cc image for
# Debian 12 ships libssl3 but not zlib, and copying all three keeps the exact versions
# the binary was built against. The build fails when the binary stops linking one of
# them, so that this list is updated.
RUN multiarch="$(gcc -print-multiarch)" \
    && mkdir -p "/out/usr/lib/$multiarch" \
    && ldd /out/registry-operator \
    && for lib in libssl.so.3 libcrypto.so.3 libz.so.1; do \
         path="$(ldd /out/registry-operator | awk -v lib="$lib" '$1 == lib { print $3 }')"; \
         if [ -z "$path" ]; then echo "registry-operator does not link $lib" >&2; exit 1; fi; \
         cp -L "$path" "/out/usr/lib/$multiarch/"; \
       done

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/usr/lib/ /usr/lib/
COPY --from=builder /out/registry-operator /usr/local/bin/registry-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/registry-operator"]
CMD ["run"]
