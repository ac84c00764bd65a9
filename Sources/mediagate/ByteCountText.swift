import Foundation

/// A byte count for people: `3.7 KiB` (binary units, for transfers) or `3.8 KB` (decimal, as
/// `ls -h --si` and file managers show file sizes).
enum ByteCountText {
    static func format(_ count: Int, binary: Bool) -> String {
        let base = binary ? 1024.0 : 1000.0
        let units = binary ? ["B", "KiB", "MiB", "GiB", "TiB"] : ["B", "KB", "MB", "GB", "TB"]
        var value = Double(count)
        var unit = 0
        while value >= base, unit < units.count - 1 {
            value /= base
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }
}
