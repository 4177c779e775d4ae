/** The native addon's public surface: loader, status and Unix-socket peer credentials. */
export { loadNative, nativeStatus } from './native-addon.js';
export type { NativeAddon, NativeStatus, PeerCredentials } from './native-addon.js';
export { socketPeerCred } from './peer-cred.js';
