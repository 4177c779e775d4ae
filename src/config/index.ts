export {
  loadConfig,
  RESERVED_ENV,
  type FlagOverride,
  type LoadConfigOptions,
  type LoadedConfig,
} from './config.js';
export { parseIni, type IniDocument, type IniEntry } from './ini.js';
export * from './schema.js';
