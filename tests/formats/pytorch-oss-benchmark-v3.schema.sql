-- The record columns of the PyTorch OSS benchmark database table, as published in
-- https://github.com/pytorch/test-infra/blob/main/clickhouse_db_schema/oss_ci_benchmark_v3/schema.sql
-- (BSD-3-Clause, Meta Platforms). Only the per-record columns a benchmark writes are kept here; the
-- metadata columns (timestamp, repo, head_sha, workflow_id, job_id, ...) are filled by test-infra's
-- upload action from the CI run. Required fields, per the "Benchmark results format" of
-- https://github.com/pytorch/pytorch/wiki/PyTorch-OSS-benchmark-infra: benchmark.name, model.name,
-- metric.name and metric.benchmark_values.
`runners` Array(Tuple(name String, type String, cpu_info String, cpu_count UInt32, mem_info String, avail_mem_in_gb UInt32, gpu_info String, gpu_count UInt32, gpu_mem_info String, avail_gpu_mem_in_gb UInt32, extra_info Map(String, String)))
`benchmark` Tuple(name String, mode String, dtype String, extra_info Map(String, String))
`model` Tuple(name String, type String, backend String, origins Array(String), extra_info Map(String, String))
`inputs` Map(String, Tuple(dtype String, extra_info Map(String, String)))
`dependencies` Map(String, Tuple(repo String, branch String, sha String, version String, extra_info Map(String, String)))
`metric` Tuple(name String, benchmark_values Array(Float32), target_value Float32, extra_info Map(String, String))
