"""The simulated city used by `pujiang demo`, the tests and the benchmarks."""
