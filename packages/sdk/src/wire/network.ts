/**
 * A sandbox's network as the API speaks of it: `'none'` (only lo), or a veth with an egress policy
 * and ingress settings. The egress rules are E2B's: `allowOut` (addresses, CIDRs, domains,
 * `*.domain`) wins over `denyOut` (addresses, CIDRs); domain entries need `denyOut` to hold
 * `0.0.0.0/0`. The server checks and normalizes what these schemas let through.
 */
import { z } from 'zod'


/** What a sandbox may reach: checked and normalized (domains in lower case, addresses as CIDRs). */
export interface EgressPolicy {
  /** Addresses and CIDRs (`a.b.c.d/n`) and domains (`example.com`, `*.example.com`) always allowed. */
  allowOut: string[]
  /** Addresses and CIDRs refused, unless `allowOut` names them. */
  denyOut: string[]
}

/** Ingress settings of a sandbox's ports. */
export interface IngressSettings {
  /** Open to anyone who reaches the server (E2B's default); when false, a request needs the sandbox's traffic token or an API key. */
  allowPublicTraffic: boolean
  /** Rewrites the Host header of ingress requests to this (`host[:port]`, `${PORT}` for the port). */
  maskRequestHost?: string
}

/** A networked sandbox's settings: its egress policy and how its ports are reached. */
export interface NetworkSettings extends EgressPolicy, IngressSettings {}

/** A sandbox's network as the API shows it: 'none' (only lo), or its settings. */
export type SandboxNetwork = 'none' | NetworkSettings

/** The egress policy and ingress settings of a create or a fork, as the body gives them. */
export const networkOptionsBody = z.strictObject({
  /** Always reachable: IPv4 addresses, CIDRs, domains (`example.com`, `*.example.com`). */
  allowOut: z.array(z.string()).optional(),
  /** Refused unless allowOut names them: IPv4 addresses and CIDRs (`0.0.0.0/0` for everything). */
  denyOut: z.array(z.string()).optional(),
  /** false is `denyOut: ['0.0.0.0/0']` (E2B's allowInternetAccess). */
  allowInternetAccess: z.boolean().optional(),
  /** false: its ports answer only requests with its traffic token (`trafficAccessToken`) or an API key. @default true */
  allowPublicTraffic: z.boolean().optional(),
  /** Host header its ports see (`host[:port]`, `${PORT}` for the port). */
  maskRequestHost: z.string().optional(),
})

/** A sandbox's network as a create or a fork asks for it (other than 'none'). */
export type NetworkOptions = z.input<typeof networkOptionsBody>

/** The network of a create: 'none' (only lo), or its options. */
export const networkBody = z.union([z.literal('none'), networkOptionsBody])

/** PATCH /v1/sandboxes/:id/network: the new egress policy, replacing the old one whole. */
export const networkUpdateBody = z.strictObject({
  allowOut: z.array(z.string()).optional(),
  denyOut: z.array(z.string()).optional(),
  allowInternetAccess: z.boolean().optional(),
})

/** A network update as the body gives it. */
export type NetworkUpdateRequest = z.input<typeof networkUpdateBody>
