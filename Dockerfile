# CI image: Debian bookworm with routerlab's dependencies installed by scripts/setup.sh.
# Run privileged (namespaces, veths, Open vSwitch, CRIU):
#   docker build -t routerlab . && docker run --privileged --rm routerlab
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      make git python3.11 python3.11-venv sudo ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /routerlab
COPY . /routerlab
# Image mode: Debian packages, CRIU's files and .venv are baked in, and any failure fails the
# build. Starting Open vSwitch, the sysctls and CRIU's self-test need the running privileged
# container: `make test` (in .ci/run) runs scripts/setup.sh again in its normal mode, which
# finds the packages and .venv in place and does just those. A .venv copied in from the build
# context would point at the host's Python: start from a fresh one.
RUN rm -rf .venv && ./scripts/setup.sh --image && rm -rf /var/lib/apt/lists/*
CMD ["bash", ".ci/run"]
