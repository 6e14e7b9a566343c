# CI image: Debian bookworm with routerlab's dependencies installed by scripts/setup.sh.
# Run privileged (namespaces, veths, Open vSwitch, CRIU):
#   docker build -t routerlab . && docker run --privileged --rm routerlab
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      make git python3.11 python3.11-venv sudo ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /routerlab
COPY . /routerlab
RUN ./scripts/setup.sh || true   # packages and .venv baked in; OVS/CRIU checks rerun at test time
CMD ["bash", ".ci/run"]
