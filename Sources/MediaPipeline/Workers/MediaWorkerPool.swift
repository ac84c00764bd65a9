import Foundation
internal import CVipsShim

/// A fixed set of threads of our own for blocking C work (libmagic, libvips, FFmpeg).
///
/// Decoding a photo blocks a thread for tens of milliseconds; done on Swift's cooperative pool
/// or an event loop it would stall every other task. Jobs wait in a bounded queue; when it is
/// full, ``MediaError/Code/overloaded`` answers at once, so a server can reply 503 instead of
/// piling up work. Each thread owns the per-thread state the C libraries need (a libmagic
/// cookie, libvips' thread buffers).
///
/// The threads keep the pool alive until ``shutdown()``; a process-wide pool simply lives as
/// long as the process.
public final class MediaWorkerPool: @unchecked Sendable {
    // @unchecked Sendable: `jobs` and `isShutDown` are only touched with `condition` locked;
    // the threads are started in `init` and never reassigned.
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var jobsHead = 0
    private var isShutDown = false
    private var runningThreads = 0

    /// The number of worker threads.
    public let threadCount: Int
    /// Jobs that may wait for a thread before new ones are refused.
    public let maxQueuedJobs: Int

    private typealias Job = @Sendable (MediaWorker) -> Void

    /// Set in the thread dictionary of every worker thread.
    static let workerThreadKey = "mediagate.mediaWorker"

    /// Whether the calling code runs on one of the media worker threads.
    static var isWorkerThread: Bool {
        Thread.current.threadDictionary[workerThreadKey] as? Bool == true
    }

    static let wholeDecodeLaneKey = "mediagate.wholeDecodeLane"

    /// Whether the calling code runs on ``wholeDecodeLane``.
    static var isWholeDecodeLane: Bool {
        Thread.current.threadDictionary[wholeDecodeLaneKey] as? Bool == true
    }

    /// One thread, for the process, where pictures that must be decoded whole and are over
    /// `VipsImaging.wholeDecodeGateBytes` are decoded one after another, so that a burst of
    /// them never holds the threads everyone else's files need.
    static let wholeDecodeLane = MediaWorkerPool(threadCount: 1, maxQueuedJobs: 64, isWholeDecodeLane: true)

    /// One thread per core, plus one. A libvips pipeline hands its decode to a libvips thread and
    /// waits, and a worker spends its own time on hashing and sniffing; the extra thread fills
    /// the gaps (measured on 2 cores, 200 JPEGs: 7.8 s with 2 threads, 7.0 s with 3, 7.0 s with 4).
    public static var defaultThreadCount: Int { ProcessInfo.processInfo.activeProcessorCount + 1 }

    /// Starts `threadCount` threads.
    ///
    /// - Parameters:
    ///   - threadCount: Worker threads; defaults to ``defaultThreadCount``.
    ///   - maxQueuedJobs: Waiting jobs beyond which ``run(_:)`` throws `overloaded`.
    public convenience init(threadCount: Int = MediaWorkerPool.defaultThreadCount, maxQueuedJobs: Int = 10_000) {
        self.init(threadCount: threadCount, maxQueuedJobs: maxQueuedJobs, isWholeDecodeLane: false)
    }

    private init(threadCount: Int, maxQueuedJobs: Int, isWholeDecodeLane: Bool) {
        self.threadCount = max(1, threadCount)
        self.maxQueuedJobs = max(0, maxQueuedJobs)
        for index in 0..<self.threadCount {
            let thread = Thread { [self] in
                // Named for debuggers and `top -H`; Linux keeps at most 15 characters.
                Thread.current.name = "mg-media-\(index)"
                Thread.current.threadDictionary[Self.workerThreadKey] = true
                if isWholeDecodeLane { Thread.current.threadDictionary[Self.wholeDecodeLaneKey] = true }
                self.workerLoop()
            }
            // libvips and FFmpeg recurse deeply on some inputs; do not rely on a small default.
            thread.stackSize = 8 << 20
            runningThreads += 1
            thread.start()
        }
    }

    /// Lets queued jobs finish, then stops the threads. Later calls to ``run(_:)`` throw.
    public func shutdown() {
        condition.lock()
        isShutDown = true
        condition.broadcast()
        condition.unlock()
    }

    /// Runs `body` on a worker thread and returns its result.
    ///
    /// - Throws: `MediaError` `.overloaded` when the queue is full or the pool is shut down,
    ///   or whatever `body` throws.
    func run<T: Sendable>(_ body: @escaping @Sendable (MediaWorker) throws -> T) async throws -> T {
        do {
            return try await runHere(body)
        } catch let error as MediaError where error.code == .needsWholeDecodeLane {
            return try await Self.wholeDecodeLane.runHere(body)
        }
    }

    private func runHere<T: Sendable>(_ body: @escaping @Sendable (MediaWorker) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job: Job = { worker in
                continuation.resume(with: Result { try body(worker) })
            }
            condition.lock()
            let accepted = !isShutDown && jobs.count - jobsHead < maxQueuedJobs + threadCount
            if accepted {
                jobs.append(job)
                condition.signal()
            }
            condition.unlock()
            if !accepted {
                continuation.resume(throwing: MediaError(.overloaded, "the media worker queue is full"))
            }
        }
    }

    /// Jobs accepted and not yet taken by a thread.
    var waitingJobCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return jobs.count - jobsHead
    }

    private func nextJob() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while jobsHead == jobs.count {
            if isShutDown { return nil }
            condition.wait()
        }
        let job = jobs[jobsHead]
        jobsHead += 1
        // Compact now and then instead of paying removeFirst's O(n) per job.
        if jobsHead > 1024, jobsHead * 2 > jobs.count {
            jobs.removeFirst(jobsHead)
            jobsHead = 0
        }
        return job
    }

    private func workerLoop() {
        let worker = MediaWorker()
        while let job = nextJob() {
            job(worker)
        }
        worker.close()
        mg_vips_thread_shutdown()
    }
}

/// State owned by one worker thread. Never leaves it.
final class MediaWorker {
    private var cookie: MagicCookie?
    /// This thread's decode worker process, when SVG and PDF are isolated (started on first use).
    var decodeChild: DecodeChild?

    /// This thread's libmagic handle, opened on first use.
    func magic() throws(MediaError) -> MagicCookie {
        if let cookie { return cookie }
        let made = try MagicCookie()
        cookie = made
        return made
    }

    func close() {
        cookie = nil
        decodeChild = nil // its deinit ends the child
    }
}

@available(*, unavailable, message: "a MediaWorker belongs to one thread")
extension MediaWorker: Sendable {}
