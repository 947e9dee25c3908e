/**
 * How much of a request the server reads whole. JSON bodies (and each Connect message) are
 * parsed in memory, so they are capped: 8 MiB leaves room for an exec's stdin given inline
 * (base64); larger input goes through the stdin route. Files never count here: PUT .../files and
 * E2B's POST /files stream to the sandbox under the server's file limit (`maxFileBytes`).
 */
export const maxJsonBytes = 8 * 1024 * 1024
