# The stageline base image: Node 20, git, ssh, tini, Claude Code as the mclaude variant (cc-mirror) and
# stageline itself. Examples build FROM it and add their pipeline; see examples/*/Dockerfile.
#
#   podman build --format docker -t stageline:latest .      (docker build -t stageline:latest . elsewhere)
#
# Builds offline: cc-mirror gets the npm-installed Claude Code binary from a server inside the build
# (scripts/install-mclaude.sh) unless CLAUDE_RELEASES_URL names a release server to download it from.
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- stageline and its dependencies, checked and compiled (dist/), then trimmed to what runs ----
FROM ${NODE_IMAGE} AS build
WORKDIR /opt/stageline
# npm ci runs `prepare` (scripts/build.mjs), which compiles nothing until the sources are there.
COPY package.json package-lock.json ./
COPY scripts/build.mjs scripts/
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY . .
RUN npm run typecheck \
  && npm run build \
  && install -m 0755 node_modules/@anthropic-ai/claude-code/bin/claude.exe /opt/claude \
  && /opt/claude --version \
  && npm prune --omit=dev --no-audit --no-fund

# ---- the mclaude variant, made by cc-mirror for the user the worker runs as ----
FROM ${NODE_IMAGE} AS variant
ARG CC_MIRROR_VERSION=2.1.0
ARG CLAUDE_CODE_VERSION=2.1.332
ARG CLAUDE_RELEASES_URL=
RUN --mount=type=cache,target=/root/.npm npm install -g --no-audit --no-fund "cc-mirror@${CC_MIRROR_VERSION}" \
  && groupadd --gid 10001 stageline \
  && useradd --uid 10001 --gid stageline --create-home --shell /bin/bash stageline
COPY --from=build /opt/claude /opt/claude
COPY scripts/claude-releases-server.mjs scripts/install-mclaude.sh /opt/install/
USER stageline
RUN CLAUDE_RELEASES_URL="${CLAUDE_RELEASES_URL}" /opt/install/install-mclaude.sh /opt/claude "${CLAUDE_CODE_VERSION}" \
  && /home/stageline/.local/bin/mclaude --version

# ---- the image ----
FROM ${NODE_IMAGE}
# Installing ca-certificates rebuilds the CA bundle; the CAs the base image already trusted (a proxy's,
# a company's) are kept in it.
RUN { cp /etc/ssl/certs/ca-certificates.crt /tmp/inherited-ca.crt 2>/dev/null || true; } \
  && apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    ca-certificates gh git openssh-client tini \
  && rm -rf /var/lib/apt/lists/* \
  && if [ -s /tmp/inherited-ca.crt ]; then cat /tmp/inherited-ca.crt >>/etc/ssl/certs/ca-certificates.crt; fi \
  && rm -f /tmp/inherited-ca.crt \
  && groupadd --gid 10001 stageline \
  && useradd --uid 10001 --gid stageline --create-home --shell /bin/bash stageline \
  && mkdir -p /workspace /var/lib/stageline /etc/stageline \
  && chown stageline:stageline /workspace /var/lib/stageline
COPY --from=build /opt/stageline /opt/stageline
COPY --from=variant --chown=stageline:stageline /home/stageline/.cc-mirror /home/stageline/.cc-mirror
COPY --from=variant --chown=stageline:stageline /home/stageline/.local /home/stageline/.local
# Plugins beside the pipeline in /etc/stageline import `stageline/pipeline` and `effect` as the engine's
# own modules (one copy of each, so their service tags are the engine's), and load as ES modules.
RUN ln -s /opt/stageline/bin/stageline.mjs /usr/local/bin/stageline \
  && ln -s /opt/stageline /opt/stageline/node_modules/stageline \
  && ln -s /opt/stageline/node_modules /etc/stageline/node_modules \
  && echo '{ "private": true, "type": "module" }' >/etc/stageline/package.json

# The agent edits code and runs tools: it runs as an unprivileged user, never as root.
USER stageline
WORKDIR /home/stageline
ENV PATH=/home/stageline/.local/bin:$PATH \
    NODE_ENV=production \
    WORKSPACE_BASE=/workspace \
    STAGELINE_DATA_DIR=/var/lib/stageline \
    STAGELINE_PIPELINE=/etc/stageline/pipeline.yaml \
    STAGELINE_HTTP_PORT=8080 \
    STAGELINE_HTTP_HOST=0.0.0.0 \
    LOG_FORMAT=json \
    STAGELINE_PARENT_DEATH_SIGNAL=false
RUN mclaude --version && stageline --help >/dev/null
VOLUME ["/workspace"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "/opt/stageline/scripts/healthcheck.mjs"]
# tini is PID 1: it hands SIGTERM to the worker, which drains, and reaps what the agents leave behind.
# A worker that dies ends tini and the container with every agent in it, so agents need no parent-death
# signal here (STAGELINE_PARENT_DEATH_SIGNAL=false above); in a container it killed healthy agents.
ENTRYPOINT ["/usr/bin/tini", "--", "stageline"]
CMD ["run"]
