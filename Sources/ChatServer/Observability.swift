import Foundation
import Hummingbird
import Logging
import MediagateCore
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// Prometheus metrics for the process: swift-metrics bootstrapped once with a
/// `PrometheusMetricsFactory`, served at `GET /metrics` in the text format.
enum Observability {
    /// The process's registry. swift-metrics can be bootstrapped once per process, and metric
    /// objects made before it count nowhere: `ChatServices` touches this first.
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Request and pipeline times span a millisecond to minutes.
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// `GET /metrics`, to loopback peers only unless `metricsFromAnyAddress`: counts of requests,
    /// sockets and jobs say more about a deployment than strangers should know.
    static func endpoint(fromAnyAddress: Bool) -> @Sendable (Request, ChatRequestContext) async throws -> Response {
        { _, context in
            guard fromAnyAddress || ["127.0.0.1", "::1"].contains(context.remoteAddress) else { throw APIError.notFound() }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
    }
}

/// Samples what is not counted as it happens: the processing queue (queued, running) and, on
/// PostgreSQL, how full the server's NOTIFY queue is, every `interval`.
struct MetricsSampler: Service {
    let repositories: Repositories
    var interval: Duration = .seconds(5)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            let queued = Gauge(label: "mediagate_jobs", dimensions: [("state", "queued")])
            let running = Gauge(label: "mediagate_jobs", dimensions: [("state", "running")])
            let notifyQueue = Gauge(label: "mediagate_notify_queue_usage")
            while !Task.isCancelled {
                // Bounded, so that the sampler stops when asked even if the database never answers.
                let jobs = repositories.jobs, usage = repositories.notifyQueueUsage
                if let depth = try? await answer(within: interval, { try await jobs.depth(now: Date()) }) {
                    queued.record(depth.queued)
                    running.record(depth.running)
                }
                if let usage, let value = try? await answer(within: interval, { try await usage() }) { notifyQueue.record(value) }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
