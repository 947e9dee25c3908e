/**
 * A fake Sandstorm API in memory (Node only), for unit tests of code that uses the SDK: sandboxes,
 * commands and files without a server, runc or root.
 */
export { startFakeApi, type FakeApi } from './fake-api.fixture.js'
