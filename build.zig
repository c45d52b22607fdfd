// drover's build.
//
//   zig build                         the agent, zig-out/bin/drover (Debug)
//   zig build -Doptimize=ReleaseFast  for benchmarks
//   zig build test                    builds and runs the C unit tests
//   zig build test -Dsanitize=true    the same under AddressSanitizer (with
//                                     leak detection) and UndefinedBehaviorSanitizer
//
// Zig ships no ASan runtime, so the sanitizer build links Debian's
// libclang_rt.asan (libclang-rt-22-dev, the LLVM that Zig's clang is) first.
const std = @import("std");

// The core: everything in src/ except main.c.
const core_sources = [_][]const u8{
    "src/agent.c",
    "src/buf.c",
    "src/checkpoint.c",
    "src/chunk.c",
    "src/compress.c",
    "src/util.c",
    "src/config.c",
    "src/http_client.c",
    "src/oauth2.c",
    "src/http_server.c",
    "src/json.c",
    "src/jsonp.c",
    "src/log.c",
    "src/metrics.c",
    "src/process_metrics.c",
    "src/registry.c",
    "src/record.c",
    "src/kube_meta.c",
    "src/kube.c",
    "src/regex.c",
    "src/labels.c",
    "src/series.c",
    "src/expo.c",
    "src/expo_proto.c",
    "src/md5.c",
    "src/sigv4.c",
    "src/aws_credentials.c",
    "src/aws_credential_answers.c",
    "src/aws_provider.c",
    "src/relabel.c",
    "src/prw.c",
};

// In-tree plugins (registered in src/registry.c).
const plugin_sources = [_][]const u8{
    "plugins/inputs/tail/tail.c",
    "plugins/inputs/tail/tail_file.c",
    "plugins/inputs/tail/cri.c",
    "plugins/inputs/tail/docker.c",
    "plugins/inputs/tail/join.c",
    "plugins/inputs/prometheus_scrape/scrape.c",
    "plugins/inputs/prometheus_scrape/job.c",
    "plugins/inputs/prometheus_scrape/target.c",
    "plugins/inputs/prometheus_scrape/cache.c",
    "plugins/inputs/prometheus_scrape/file_sd.c",
    "plugins/inputs/prometheus_scrape/kube_sd.c",
    "plugins/inputs/prometheus_scrape/kube_sd_endpoints.c",
    "plugins/inputs/prometheus_scrape/kube_sd_meta.c",
    "plugins/inputs/kubelet/kubelet.c",
    "plugins/inputs/kubelet/summary.c",
    "plugins/inputs/coredns/coredns.c",
    "plugins/inputs/prometheus_scrape/preset.c",
    "plugins/inputs/dns_probe/dns_probe.c",
    "plugins/inputs/dns_probe/exchange.c",
    "plugins/inputs/dns_probe/dns_msg.c",
    "plugins/inputs/dns_probe/servers.c",
    "plugins/outputs/file/file.c",
    "plugins/outputs/null/null.c",
    "plugins/outputs/stdout/stdout.c",
    "plugins/outputs/ndjson.c",
    "plugins/outputs/msgpack.c",
    "plugins/outputs/http/http.c",
    "plugins/outputs/http/body.c",
    "plugins/outputs/kafka/kafka.c",
    "plugins/outputs/kafka/kafka_conf.c",
    "plugins/outputs/kafka/kafka_message.c",
    "plugins/outputs/kafka/kafka_stats.c",
    "plugins/outputs/loki/loki.c",
    "plugins/outputs/loki/loki_request.c",
    "plugins/outputs/remote_write/remote_write.c",
    "plugins/outputs/remote_write/rw_shards.c",
    "plugins/outputs/remote_write/rw_sigv4.c",
    "plugins/outputs/remote_write/rw_spill.c",
    "plugins/outputs/remote_write/rw_disk.c",
    "plugins/filters/kubernetes/kubernetes.c",
    "plugins/filters/kubernetes/pods.c",
    "plugins/filters/namespaces/namespaces.c",
    "plugins/filters/keys.c",
    "plugins/filters/grep/grep.c",
    "plugins/filters/modify/modify.c",
    "plugins/filters/modify/lift.c",
    "plugins/filters/parse/parse.c",
    "plugins/filters/parse/parse_record.c",
    "plugins/filters/parse/logfmt.c",
    "plugins/filters/parse/timefmt.c",
    "plugins/filters/redact/redact.c",
    "plugins/filters/sample/sample.c",
    "plugins/filters/throttle/throttle.c",
    "plugins/filters/throttle/bucket.c",
    "plugins/filters/throttle/groups.c",
    "plugins/filters/multiline/multiline.c",
    "plugins/filters/multiline/detect.c",
    "plugins/filters/route/route.c",
};

const unit_test_sources = [_][]const u8{
    "tests/unit/main.c",
    "tests/unit/test_chunk.c",
    "tests/unit/test_config.c",
    "tests/unit/test_formats.c",
    "tests/unit/test_join.c",
    "tests/unit/test_checkpoint.c",
    "tests/unit/test_metrics.c",
    "tests/unit/test_json.c",
    "tests/unit/test_jsonp.c",
    "tests/unit/test_kube.c",
    "tests/unit/test_sanitizer.c",
    "tests/unit/test_tail.c",
    "tests/unit/test_http_client.c",
    "tests/unit/test_loki.c",
    "tests/unit/test_compress.c",
    "tests/unit/test_http_output.c",
    "tests/unit/filter_harness.c",
    "tests/unit/config_harness.c",
    "tests/unit/test_kafka.c",
    "tests/unit/test_regex.c",
    "tests/unit/test_grep.c",
    "tests/unit/test_modify.c",
    "tests/unit/test_parse.c",
    "tests/unit/test_redact.c",
    "tests/unit/test_sample.c",
    "tests/unit/test_throttle.c",
    "tests/unit/test_multiline.c",
    "tests/unit/test_route.c",
    "tests/unit/test_dynamic_filters.c",
    "tests/unit/test_labels.c",
    "tests/unit/test_series.c",
    "tests/unit/test_scrape_cache.c",
    "tests/unit/test_kube_sd.c",
    "tests/unit/test_sigv4.c",
    "tests/unit/test_aws_answers.c",
    "tests/unit/test_aws_provider.c",
    "tests/unit/test_expo.c",
    "tests/unit/test_expo_proto.c",
    "tests/unit/test_relabel.c",
    "tests/unit/test_prw.c",
    "tests/unit/test_kubelet.c",
    "tests/unit/test_oauth2.c",
    "tests/unit/test_dns_probe.c",
    "tests/unit/test_rw_spill.c",
};

const system_libs = [_][]const u8{ "libcrypto", "libdeflate", "libuv", "yaml-0.1", "zlib", "libcurl", "libzstd", "snappy", "libprotobuf-c", "libpcre2-8", "rdkafka" };

// Our own .proto files; protoc-c turns each into <name>.pb-c.[ch] at build
// time, and the generated headers are on the include path.
const proto_files = [_][]const u8{
    "loki_push.proto",
    "prometheus_client.proto",
    "prw1.proto",
    "prw2.proto",
};

const asan_runtime = "/usr/lib/llvm-22/lib/clang/22/lib/linux/libclang_rt.asan-x86_64.so";
const asan_dir = "/usr/lib/llvm-22/lib/clang/22/lib/linux";

const version = "0.1.0";

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const sanitize = b.option(bool, "sanitize", "AddressSanitizer + UndefinedBehaviorSanitizer") orelse false;

    var flags: std.ArrayList([]const u8) = .empty;
    flags.appendSlice(b.allocator, &.{
        "-std=c17",
        "-D_GNU_SOURCE",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wno-unused-parameter",
        // option tables initialise a union member positionally: the braces
        // the warning asks for would only add noise
        "-Wno-missing-braces",
        "-fno-strict-aliasing",
        "-DDROVER_VERSION=\"" ++ version ++ "\"",
    }) catch @panic("OOM");
    if (sanitize) {
        flags.appendSlice(b.allocator, &.{ "-fsanitize=address", "-fno-omit-frame-pointer" }) catch @panic("OOM");
    }

    const proto_gen = generateProto(b);

    const exe = b.addExecutable(.{
        .name = "drover",
        .root_module = makeModule(b, target, optimize, sanitize),
    });
    addProto(b, exe.root_module, proto_gen);
    addSources(b, exe.root_module, &core_sources, flags.items);
    addSources(b, exe.root_module, &plugin_sources, flags.items);
    addSources(b, exe.root_module, &.{"src/main.c"}, flags.items);
    b.installArtifact(exe);

    const unit = b.addExecutable(.{
        .name = "drover-unit",
        .root_module = makeModule(b, target, optimize, sanitize),
    });
    addProto(b, unit.root_module, proto_gen);
    addSources(b, unit.root_module, &core_sources, flags.items);
    addSources(b, unit.root_module, &plugin_sources, flags.items);
    addSources(b, unit.root_module, &unit_test_sources, flags.items);
    unit.root_module.addIncludePath(b.path("tests/unit"));
    const install_unit = b.addInstallArtifact(unit, .{});

    const run_unit = b.addRunArtifact(unit);
    run_unit.setCwd(b.path("."));
    if (sanitize) {
        run_unit.setEnvironmentVariable("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1");
        run_unit.setEnvironmentVariable("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
        run_unit.setEnvironmentVariable("ASAN_SYMBOLIZER_PATH", "/usr/bin/addr2line");
    }
    run_unit.addPassthruArgs();
    run_unit.has_side_effects = true;
    const test_step = b.step("test", "Build and run the C unit tests");
    test_step.dependOn(&install_unit.step);
    test_step.dependOn(&run_unit.step);

    const unit_step = b.step("unit", "Build the unit-test binary only");
    unit_step.dependOn(&install_unit.step);
}

fn makeModule(b: *std.Build, target: std.Build.ResolvedTarget, optimize: std.builtin.OptimizeMode, sanitize: bool) *std.Build.Module {
    const m = b.createModule(.{
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        // UBSan comes through Zig's own runtime in every sanitized build;
        // release builds do without it.
        .sanitize_c = if (sanitize) .full else if (optimize == .debug) .full else .off,
        .omit_frame_pointer = false,
    });
    if (sanitize) {
        // The ASan runtime must come first among the linked libraries.
        m.addObjectFile(.{ .cwd_relative = asan_runtime });
        m.addRPath(.{ .cwd_relative = asan_dir });
    }
    m.addIncludePath(b.path("include"));
    m.addIncludePath(b.path("src"));
    for (system_libs) |lib| m.linkSystemLibrary(lib, .{ .use_pkg_config = .force });
    m.linkSystemLibrary("m", .{});
    return m;
}

// Runs protoc-c over proto/ and returns the directory it wrote.
fn generateProto(b: *std.Build) std.Build.LazyPath {
    const run = b.addSystemCommand(&.{"protoc-c"});
    run.addPrefixedDirectoryArg("--proto_path=", b.path("proto"));
    const out = run.addPrefixedOutputDirectoryArg("--c_out=", "proto-gen");
    for (proto_files) |f| run.addFileArg(b.path(b.fmt("proto/{s}", .{f})));
    return out;
}

fn addProto(b: *std.Build, m: *std.Build.Module, gen: std.Build.LazyPath) void {
    m.addIncludePath(gen);
    for (proto_files) |f| {
        const stem = f[0 .. f.len - ".proto".len];
        // generated code: compiled without our warnings-as-errors
        m.addCSourceFile(.{ .file = gen.path(b, b.fmt("{s}.pb-c.c", .{stem})), .flags = &.{ "-std=c17", "-w" } });
    }
}

fn addSources(b: *std.Build, m: *std.Build.Module, files: []const []const u8, flags: []const []const u8) void {
    _ = b;
    m.addCSourceFiles(.{ .files = files, .flags = flags });
}
