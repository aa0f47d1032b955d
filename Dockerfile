# Multi-stage build of the pychat binary. (No Docker engine runs on the development machines,
# so this file is not exercised by the test suite.)
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libmariadb-dev libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pychat

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libmariadb3 libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data pychat && mkdir /data && chown pychat /data
COPY --from=build /src/target/release/pychat /usr/local/bin/pychat
USER pychat
ENV PYCHAT_BIND=0.0.0.0:8080 PYCHAT_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["pychat"]
CMD ["serve"]
