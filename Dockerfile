# Builds api, worker and notifier into one small runtime image; compose picks
# the binary per service with `command`.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Compile sqlx query macros from the committed .sqlx cache: no database needed.
ENV SQLX_OFFLINE=true
COPY . .
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/api target/release/worker target/release/notifier /out/

FROM debian:bookworm-slim
# ca-certificates for TLS to external brokers/SMTP; curl for healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home booking
COPY --from=builder /out/ /usr/local/bin/
USER booking
ENV RUST_LOG=info
EXPOSE 8080 9101
CMD ["api"]
