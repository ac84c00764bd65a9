import Foundation
import NIOCore
import NIOPosix

/// The process entry point.
///
/// Swift Concurrency runs on NIO's event loops (one thread per core) instead of a pool of its
/// own, so a request handler and its connection's I/O share a thread and no request hops
/// between the two pools (measured: ~10 % more cached-thumbnail requests/s, 12,300 to 13,700;
/// this machine's run-to-run noise is about as large). It is safe only because nothing
/// blocking runs on a Swift task:
/// libvips, FFmpeg and libmagic run on `MediaWorkerPool` threads, file system calls on NIO's
/// thread pool, SQLite on GRDB's queues.
@main
enum Entry {
    static func main() {
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        Task {
            await Mediagate.main()
            exit(0)
        }
        dispatchMain()
    }
}
