import Glibc

/// File actions for `posix_spawn` that keep a child from inheriting this process's descriptors.
///
/// `posix_spawn` passes on every descriptor not marked close-on-exec, and not everything in a
/// process marks them (Foundation's `Pipe` does not). A long-lived child (a decode worker, or a
/// database server a test starts) holding the write end of someone else's pipe means that
/// reader never sees end-of-file; holding a client's socket, that the peer never sees it close.
/// This closes every descriptor from 3 up in the child, after the `dup2`s onto 0–2.
package enum SpawnActions {
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34, Debian 12 has 2.36), looked up
    /// at run time: Swift's Glibc module does not import it.
    private static let addCloseFrom: CloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: CloseFrom.self) }

    /// Adds "close every descriptor from 3 up" to `actions`; false where the C library has no way.
    @discardableResult
    package static func closeInheritedDescriptors(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>) -> Bool {
        guard let addCloseFrom else { return false }
        return addCloseFrom(actions, 3) == 0
    }
}
