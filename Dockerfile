# rim: one image, every component (`rim standalone|logic|router|job|comet`).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --no-default-features: the production image leaves out the `rim bench` load
# generator (the rim-bench crate and its dependencies).
RUN cargo build --release --locked --no-default-features --bin rim

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/rim /usr/local/bin/rim
COPY config /etc/rim
ENTRYPOINT ["rim"]
CMD ["standalone"]
