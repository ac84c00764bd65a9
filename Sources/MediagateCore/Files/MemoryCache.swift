import Synchronization

/// A bounded in-memory cache for values that never change once written: stored-file records
/// and thumbnail bytes (both keyed by content). Safe from any thread.
///
/// Bounded by a total cost (entries, or bytes). When an insert goes over it, arbitrary entries
/// are evicted: for immutable, content-keyed data random eviction keeps nearly the hit rate of
/// LRU without a list to update on every read, so a hit is one lock and one lookup.
package final class MemoryCache<Value: Sendable>: Sendable {
    private struct State {
        package var entries: [String: (value: Value, cost: Int)] = [:]
        package var totalCost = 0
    }

    private let state = Mutex(State())
    package let capacity: Int

    /// - Parameter capacity: The most total cost held; 0 turns the cache off.
    package init(capacity: Int) {
        self.capacity = capacity
    }

    package subscript(key: String) -> Value? {
        state.withLock { $0.entries[key]?.value }
    }

    /// Keeps `value` unless its cost alone is over a sixteenth of the capacity (one large
    /// entry should not flush everything else).
    package func insert(_ value: Value, forKey key: String, cost: Int = 1) {
        guard capacity > 0, cost * 16 <= capacity else { return }
        state.withLock { state in
            if let old = state.entries.updateValue((value, cost), forKey: key) { state.totalCost -= old.cost }
            state.totalCost += cost
            while state.totalCost > capacity, let victim = state.entries.first(where: { $0.key != key }) {
                state.entries[victim.key] = nil
                state.totalCost -= victim.value.cost
            }
        }
    }
}
