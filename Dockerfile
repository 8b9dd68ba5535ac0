# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: no lifecycle script runs before the sources are copied.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.demo.json ./
COPY src ./src
COPY demo ./demo
# The demo's helpers (ports, waits, the sidecar config writer): compiled beside it into dist/harness.
COPY harness ./harness
# The demo app (dist/demo/app.js) ships too: docker-compose.yml runs it as the app.
RUN npm run build && npx tsc -p tsconfig.demo.json

# Runtime stage: production dependencies and the compiled code only, as a non-root user.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY config ./config
USER node
# 8080: clients (the load balancer); 9090: admin (/healthz, /readyz, /metrics).
EXPOSE 8080 9090
# node:24-slim has no curl; Node's fetch does the check. ADMIN_PORT matches config/docker.yaml.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.ADMIN_PORT||9090)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# node is PID 1: the runtime's SIGTERM reaches the sidecar itself, no npm or shell in between.
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--config", "config/docker.yaml"]
