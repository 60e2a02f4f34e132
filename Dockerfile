# One image, two programs: /app/condense-coordinator (the default entry point) and /app/condense-worker.
#
#   CPU (the default):
#     docker build -t condensecluster/condense-cluster:0.1.0 .
#     (same as: docker build --target runtime-cpu --build-arg TORCH_BACKEND=cpu -t condensecluster/condense-cluster:0.1.0 .)
#   NVIDIA GPUs:
#     docker build --target runtime-cuda --build-arg TORCH_BACKEND=cuda -t condensecluster/condense-cluster:0.1.0-cuda .
#     (or just --build-arg TORCH_BACKEND=cuda: the last stage picks runtime-${TORCH_BACKEND})
#
# Running it on plain Docker hosts (helm/ does the same on Kubernetes): Akka nodes name the address they are reached at
# (--host), so host networking is the simple way; the default CMD keeps the coordinator's Akka host at 127.0.0.1.
#   coordinator: docker run --network host condensecluster/condense-cluster:0.1.0 \
#                    serve --control-host 0.0.0.0 --local-workers 0 --workers 2 --host <coordinator address>
#   worker:      docker run --network host --entrypoint /app/condense-worker condensecluster/condense-cluster:0.1.0 \
#                    --seed <coordinator address>:4053 --host <this host's address> --port 4054 --data-port 5000 --ring-port 5001
#   (a worker of the -cuda image: docker run --gpus all ... and --device cuda)

# cpu or cuda: which libtorch the publish bundles (Directory.Build.props) and which runtime stage is the default.
ARG TORCH_BACKEND=cpu
# libtorch-cuda-12.8 2.10.0 (TorchSharp-cuda-linux 0.107.0) is built against CUDA 12.8. That libtorch carries its own
# CUDA and cuDNN libraries, so a smaller base (nvidia/cuda:12.8.1-base-ubuntu22.04) may do; the cudnn-runtime one is
# the safe choice.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# ---------------------------------------------------------------------------------------------------------------------
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG TORCH_BACKEND
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
WORKDIR /src
# Project files first, so that the restore (about 1 GB of libtorch for CPU, several GB for CUDA) is a cached layer
# that only a change of packages invalidates. build/ holds the MSBuild task that patches libLibTorchSharp.so.
COPY Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY build/ build/
COPY Shared/Shared.csproj Shared/
COPY Worker/Worker.csproj Worker/
COPY Coordinator/Coordinator.csproj Coordinator/
RUN dotnet restore Coordinator -p:TorchBackend=${TORCH_BACKEND}
COPY Shared/ Shared/
COPY Worker/ Worker/
COPY Coordinator/ Coordinator/
# The coordinator references the worker project, so both programs (apphosts, dlls) and libtorch land in /out.
# tests/Deployment/PublishTests runs this same command and checks that this line still says so.
RUN dotnet publish Coordinator -c Release -o /out -p:TorchBackend=${TORCH_BACKEND}
# The publish keeps only this platform's native libraries (build/HostNativeAssets.targets), so /out holds linux-x64
# glibc's alone. Debug symbols are not needed in the image.
RUN rm -f /out/*.pdb

# ---------------------------------------------------------------------------------------------------------------------
# CPU runtime: the ASP.NET Core runtime (Kestrel serves the control API and the data plane), no SDK. libtorch_cpu.so
# brings its own libgomp (libgomp-98b21ff3.so.1, found through its $ORIGIN runpath); everything else it and
# libLibTorchSharp.so need (libstdc++, libgcc_s, libc) is in the base image, so nothing is installed.
FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime-cpu
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1
# A home directory: the control API token is kept under ~/.config/condense-cluster.
RUN groupadd --gid 10001 condense \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin condense
WORKDIR /app
# Program files stay root-owned (read-only to the process); runs/ (the default --out) is the user's.
COPY --from=build /out/ /app/
RUN mkdir -p /app/runs && chown 10001:10001 /app/runs
# 4053 coordinator Akka, 4054 worker Akka, 4080 control API (gRPC), 4081 dashboard and /metrics, 5000 worker data plane (gRPC), 5001 worker ring listener.
EXPOSE 4053 4054 4080 4081 5000 5001
USER 10001
ENTRYPOINT ["/app/condense-coordinator"]
CMD ["serve", "--control-host", "0.0.0.0", "--local-workers", "0"]

# ---------------------------------------------------------------------------------------------------------------------
# CUDA runtime: NVIDIA's base (the container toolkit's conventions, CUDA and cuDNN user-space libraries; the driver is
# mounted in by --gpus) plus the ASP.NET Core runtime copied from Microsoft's image. Ubuntu 22.04's libstdc++ lacks
# GLIBCXX_3.4.32, which is what the build's ELF patch of libLibTorchSharp.so is for.
FROM ${CUDA_IMAGE} AS runtime-cuda
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    DOTNET_ROOT=/usr/share/dotnet
# What .NET itself needs on Ubuntu 22.04 (ICU for globalization, OpenSSL, zlib, CA certificates, time zones).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libicu70 libssl3 tzdata zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY --from=mcr.microsoft.com/dotnet/aspnet:10.0 /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet
RUN groupadd --gid 10001 condense \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin condense
WORKDIR /app
COPY --from=build /out/ /app/
# Built without --build-arg TORCH_BACKEND=cuda, this image would hold the CPU libtorch: refuse rather than ship that.
RUN find /app/runtimes -name 'libtorch_cuda.so' | grep -q . \
    || { echo "runtime-cuda needs the CUDA libtorch: build with --build-arg TORCH_BACKEND=cuda" >&2; exit 1; }
RUN mkdir -p /app/runs && chown 10001:10001 /app/runs
EXPOSE 4053 4054 4080 4081 5000 5001
USER 10001
ENTRYPOINT ["/app/condense-coordinator"]
CMD ["serve", "--control-host", "0.0.0.0", "--local-workers", "0"]

# ---------------------------------------------------------------------------------------------------------------------
# Default target: the runtime that matches TORCH_BACKEND. Needs BuildKit (Docker's default builder since 23.0), which
# builds only the stages this one needs; the legacy builder would also build (and fail) runtime-cuda in a CPU build.
FROM runtime-${TORCH_BACKEND} AS runtime
