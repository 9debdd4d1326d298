# Castellan: one static-ish binary on a small Debian base, running as a non-root user.
# Build:  docker build -t castellan .
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The dependencies first, in a layer of their own: built from the manifests alone (each crate's sources
# stubbed), it is reused until Cargo.toml or Cargo.lock change, so a change to the sources rebuilds only
# Castellan's own crates.
COPY Cargo.toml Cargo.lock ./
COPY crates/castellan/Cargo.toml crates/castellan/
COPY crates/castellan-agent/Cargo.toml crates/castellan-agent/
COPY crates/castellan-core/Cargo.toml crates/castellan-core/
COPY crates/castellan-files/Cargo.toml crates/castellan-files/
COPY crates/castellan-server/Cargo.toml crates/castellan-server/
COPY crates/castellan-store/Cargo.toml crates/castellan-store/
COPY crates/castellan-verify/Cargo.toml crates/castellan-verify/
COPY crates/castellan-wire/Cargo.toml crates/castellan-wire/
RUN for c in crates/*/; do mkdir -p "$c/src" && : > "$c/src/lib.rs"; done \
 && echo 'fn main() {}' > crates/castellan/src/main.rs \
 && mkdir -p crates/castellan-core/benches crates/castellan-verify/benches crates/castellan-verify/examples \
 && for f in crates/castellan-core/benches/signing.rs crates/castellan-core/benches/pki.rs \
             crates/castellan-verify/benches/verify.rs crates/castellan-verify/examples/service.rs; do \
      echo 'fn main() {}' > "$f"; done \
 && cargo build --release --locked -p castellan \
 && rm -rf crates/*/src crates/*/benches crates/*/examples \
           target/release/.fingerprint/castellan* target/release/deps/*castellan* target/release/castellan*
# Then the sources: only Castellan's crates compile here.
COPY . .
RUN cargo build --release --locked -p castellan && strip target/release/castellan

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/castellan --create-home castellan \
 && install -d -o castellan -g castellan -m 0700 /var/lib/castellan/data /var/lib/castellan/secrets \
      /var/lib/castellan/keys \
 && install -d -o castellan -g castellan -m 0755 /var/lib/castellan/ca
# The directories above exist in the image so that a named volume mounted on one starts out owned by
# the castellan user (Docker copies the image's directory, owner and mode included, into an empty named
# volume); a mount point missing from the image would be root's, and `castellan init` could not write.
COPY --from=build /src/target/release/castellan /usr/local/bin/castellan
USER castellan
WORKDIR /var/lib/castellan
ENV CASTELLAN_DATA_DIR=/var/lib/castellan/data
EXPOSE 8270
# Liveness over loopback, whether the API is served in plain HTTP or HTTPS ([tls]): the HTTPS probe talks
# to this container itself, so it does not check the certificate (compose checks it, with root.pem).
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8270/readyz || curl -fsSk https://127.0.0.1:8270/readyz || exit 1
ENTRYPOINT ["castellan"]
CMD ["serve", "--listen", "0.0.0.0:8270"]
