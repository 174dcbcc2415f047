export { Rng } from "./prng";
export { type SimFailure, type SimOptions, type SimResult, type SimStats, Simulation, runSeed } from "./simulation";
export { NoDisk, type Recovered, type Storage } from "./storage";
