/** Sandboxes' networks on one host: slots, nftables policy, resolver, name checks, ingress connections. */
export { createHostNetwork, checkSandboxCidr, defaultSandboxCidr, type HostNetwork, type HostNetworkOptions, type SandboxNetworkRecord } from './host-network.js'
export { neverRanges, privateRanges } from './address-ranges.js'
export type { NetworkSlot } from './slots.js'
export { nftHelperPath } from './nft.js'
