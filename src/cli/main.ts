#!/usr/bin/env node
/** `sandstorm`: the command line, thin over the SDK. Exit codes are listed in exit-codes.ts. */
import { main } from './program.js'

await main()
