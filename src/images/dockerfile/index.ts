/** Dockerfile builds: parse and refuse up front, plan with Docker's expansion, build layer by layer with a cache. */
export { buildDockerfile, type BuildDockerfileOptions } from './build-dockerfile.js'
export { BuildStepFailed } from '../../shared/index.js'
export { parseDockerfile, type ParsedDockerfile, type DockerfileStep } from './parse-dockerfile.js'
export { planDockerfile, type DockerfilePlan, type PlannedStep } from './plan-steps.js'
export { loadDockerignore, parseDockerignore, type ContextFilter } from './dockerignore.js'
