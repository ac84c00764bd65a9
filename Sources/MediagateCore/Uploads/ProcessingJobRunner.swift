import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Takes processing jobs from the ``JobQueue`` and runs them through ``AttachmentIngest``,
/// at most `concurrency` at a time, on whichever node has a free slot.
///
/// A job is leased, not owned: a node killed mid-processing leaves its job to be taken again
/// once the lease ends (by another node, or by itself after a restart). A job that fails is
/// retried with a growing pause; after ``maxAttempts`` claims its upload is refused as
/// `corrupt` (a file that kills its worker every time must not be retried forever).
package struct ProcessingJobRunner: Service {
    package let jobs: any JobQueue
    package let ingest: AttachmentIngest
    /// Who holds a lease: this node and process, for the logs and the jobs table.
    package let owner: String
    /// Longer than any processing may take (the pipeline's own time limits are far shorter):
    /// a lease that ends while its worker still runs lets a second worker start the same job.
    package let lease: TimeInterval
    package let concurrency: Int
    package let maxAttempts: Int
    /// How often an idle runner looks for jobs other nodes queued, or whose lease ended.
    package let pollInterval: Duration
    package let doorbell: Doorbell
    package let logger: Logger

    package init(jobs: any JobQueue, ingest: AttachmentIngest, owner: String, lease: TimeInterval, concurrency: Int = 8,
                 maxAttempts: Int = 5, pollInterval: Duration = .seconds(1), doorbell: Doorbell, logger: Logger) {
        self.jobs = jobs
        self.ingest = ingest
        self.owner = owner
        self.lease = lease
        self.concurrency = concurrency
        self.maxAttempts = maxAttempts
        self.pollInterval = pollInterval
        self.doorbell = doorbell
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            // `concurrency` workers, each taking one job at a time; the media worker pools bound
            // the actual decoding, so this only bounds jobs held by this node.
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        while !Task.isCancelled {
                            if let job = await claim() {
                                await runOne(job)
                            } else {
                                // Nothing due: wait for a local enqueue, or the poll interval
                                // (other nodes' jobs, ended leases, due retries).
                                await doorbell.wait(upTo: pollInterval)
                            }
                        }
                    }
                }
            }
        }
    }

    private func claim() async -> LeasedJob? {
        do {
            // Bounded, so that the runner stops when asked even if the database never answers;
            // a claim that lands later leaves its job to be claimed again when its lease ends.
            let jobs = jobs, owner = owner, lease = lease
            guard let answered = try await answer(within: .seconds(30), { try await jobs.claim(owner: owner, lease: lease, now: Date()) }) else {
                logger.error("claiming a processing job did not answer within 30 s")
                return nil
            }
            return answered
        } catch {
            logger.error("claiming a processing job failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Runs one leased job to its end: done, retried later, or given up.
    package func runOne(_ leased: LeasedJob) async {
        let upload = leased.job.uploadId
        do {
            try await ingest.process(leased.job)
            try await jobs.complete(leased.id)
        } catch {
            Counter(label: "mediagate_job_failures_total").increment()
            // A store that cannot be reached says nothing about the file: it waits, however long
            // the outage, instead of being refused as corrupt and its bytes deleted.
            if leased.attempts >= maxAttempts, !Self.isOutage(error) {
                Counter(label: "mediagate_jobs_given_up_total").increment()
                logger.error("processing gave up", metadata: ["upload": "\(upload)", "attempts": "\(leased.attempts)", "error": "\(error)"])
                try? await ingest.giveUp(on: upload)
                try? await jobs.complete(leased.id)
            } else {
                let pause = Self.backoff(attempt: leased.attempts)
                logger.warning("processing failed; will retry", metadata: ["upload": "\(upload)", "attempt": "\(leased.attempts)",
                                                                          "retry_in_s": "\(Int(pause))", "error": "\(error)"])
                try? await jobs.retry(leased.id, at: Date().addingTimeInterval(pause), error: "\(error)")
                ingest.waiters.settle(upload)
            }
        }
    }

    /// Failures of the infrastructure, not of the upload.
    package static func isOutage(_ error: any Error) -> Bool {
        if case DomainError.storageUnavailable = error { return true }
        return false
    }

    /// 2, 4, 8, … seconds, at most five minutes.
    package static func backoff(attempt: Int) -> TimeInterval {
        min(300, pow(2, Double(max(1, attempt))))
    }
}

/// Wakes waiting tasks at once when there is work (a job queued on this node), instead of at
/// their next poll.
package final class Doorbell: Sendable {
    private let waiting = Mutex([UUID: CheckedContinuation<Void, Never>]())
    private let rang = Atomic<Bool>(false)

    package init() {}

    package func ring() {
        rang.store(true, ordering: .releasing)
        waiting.withLock { waiting in
            defer { waiting.removeAll() }
            return Array(waiting.values)
        }.forEach { $0.resume() }
    }

    /// Returns when rung (at once if it was rung since the last wait) or after `timeout`.
    package func wait(upTo timeout: Duration) async {
        if rang.exchange(false, ordering: .acquiringAndReleasing) { return }
        let ticket = UUID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let now = self.waiting.withLock { waiting -> Bool in
                            if Task.isCancelled || self.rang.load(ordering: .acquiring) { return true }
                            waiting[ticket] = continuation
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    self.waiting.withLock { $0.removeValue(forKey: ticket) }?.resume()
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        rang.store(false, ordering: .releasing)
    }
}
