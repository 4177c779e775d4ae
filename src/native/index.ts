/** The native addon's public surface: loader, status, Unix-socket peer credentials, held sockets. */
export { loadNative, nativeSockets, nativeStatus, nativeUdp } from './native-addon.js';
export type { NativeAddon, NativeSockets, NativeStatus, NativeUdp, PeerCredentials } from './native-addon.js';
export { socketPeerCred } from './peer-cred.js';
