/**
 * Errors about a model directory's `manifest.json` (format, version, roles, fields, module schemas).
 * Missing or corrupt files are {@link ModelLoadError}s instead (see `lib/errors.ts`).
 *
 * @module
 */
import { StreamingT2VError } from '../errors.js';

/**
 * The manifest (or a component's TorchScript schema) does not describe a usable model directory.
 * `path` is the file at fault; `role` the component, when one is concerned. The message says how to fix it.
 * `code` is `'ERR_MANIFEST'`.
 */
export class ManifestError extends StreamingT2VError {
  /** The manifest or component file the error is about. */
  readonly path: string;
  /** The component role concerned, if any. */
  readonly role?: string;

  constructor(path: string, message: string, options?: { cause?: unknown; role?: string }) {
    super('ERR_MANIFEST', message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.path = path;
    if (options?.role !== undefined) this.role = options.role;
  }
}

/** The manifest's `format_version` is newer than this library reads. */
export class ManifestVersionError extends ManifestError {
  /** The version found in the manifest. */
  readonly formatVersion: number;
  /** The newest version this library reads. */
  readonly supportedVersion: number;

  constructor(path: string, formatVersion: number, supportedVersion: number) {
    super(
      path,
      `${path} has format_version ${formatVersion}, but this version of streamingt2v reads format_version ≤ ${supportedVersion}. ` +
        `Upgrade streamingt2v, or re-export the model directory with the models/export.py shipped with this version ` +
        `(python3 -m models.export ... --out <dir>).`,
    );
    this.formatVersion = formatVersion;
    this.supportedVersion = supportedVersion;
  }
}
