/**
 * Browser defaults: WebSockets to reach the relay, circuit relay v2 for
 * signalling, WebRTC for direct browser-to-browser links (no public STUN:
 * `iceServers: []`), and a connection gater that lets the configured relay
 * be dialed even on `ws://` and private addresses. Storage goes through
 * `level`, which is IndexedDB in browsers. Selected by the package.json
 * `browser` field, so Node-only transports are never bundled.
 */
import { webSockets } from '@libp2p/websockets'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { webRTC } from '@libp2p/webrtc'
import type { PlatformDefaults } from './types.ts'

export const platform: PlatformDefaults = {
  name: 'browser',
  defaultListen: ['/p2p-circuit', '/webrtc'],
  transports: () => [webSockets(), circuitRelayTransport(), webRTC({ rtcConfiguration: { iceServers: [] } })],
  // libp2p's browser gater refuses private and insecure addresses; peers here
  // are reached through the relay the user configured, often on a LAN or localhost
  connectionGater: () => ({ denyDialMultiaddr: async () => false }),
  extraServices: () => ({})
}
