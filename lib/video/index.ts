/**
 * Video output: MP4 through the system ffmpeg, PNG sequences and raw RGB24, behind one {@link FrameSink} interface.
 * This file only re-exports.
 *
 * @module
 */
export { FFMPEG_INSTALL_HINT, FfmpegError, FfmpegNotFoundError, FrameSinkError, type FfmpegFailure, type SinkFailure } from './errors.js';
export { FFMPEG_ENV_VAR, locateFfmpeg, type FfmpegInfo, type FfmpegSource, type LocateFfmpegOptions } from './ffmpeg.js';
export { Mp4Writer, type Mp4WriterOptions, type Mp4WriterResult, type X264Preset } from './mp4-writer.js';
export { crc32, encodePng, encodePngSync, type PngFilter, type PngOptions } from './png.js';
export { validateVideoFrame, type StageFilterOptions, type VideoFrame, type VideoStage } from './video-frame.js';
export { FanoutSink, Mp4Sink, type FanoutSinkOptions, type FrameSink, type Mp4SinkOptions } from './frame-sink.js';
export { PngSequenceSink, type PngSequenceSinkOptions } from './png-sink.js';
export { RawSink, type RawSidecar, type RawSinkOptions } from './raw-sink.js';
