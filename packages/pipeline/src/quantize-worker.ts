/**
 * Worker-thread entry: quantizes one group of W4A4 units (`quantizeW4A4Group`) per message. Results and errors
 * go back by message; an error keeps its PipelineError code and the layer it names.
 */
import { parentPort } from "node:worker_threads";
import { PipelineError } from "./errors.js";
import { quantizeW4A4Group } from "./quantize-units.js";
import type { GroupTask } from "./workers.js";

if (parentPort === null) throw new Error("quantize-worker.ts runs as a worker thread");
const port = parentPort;
port.on("message", (msg: { id: number; task: GroupTask }) => {
  try {
    const r = quantizeW4A4Group(msg.task.units, msg.task.calibration, msg.task.config);
    port.postMessage({ id: msg.id, result: r });
  } catch (e) {
    const err = e as Error;
    port.postMessage({
      id: msg.id,
      error: {
        message: err instanceof PipelineError ? err.message.replace(`${err.where}: `, "") : err.message,
        code: err instanceof PipelineError ? err.code : undefined,
        where: err instanceof PipelineError ? err.where : undefined,
        name: err.name,
      },
    });
  }
});
