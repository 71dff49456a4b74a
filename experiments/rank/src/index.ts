export { loadRankConfig, type RankConfig, rankConfigSchema } from "./config.js";
export { formatRank, type RankResult, runRank } from "./run.js";
