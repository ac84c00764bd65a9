import Foundation
import MediagateCore

/// Signing keys as files in one node's data directory (`jwt-signing-key`, `url-signing-key`),
/// mode 0600: the embedded default, for a single node.
package struct DirectorySigningKeys: SigningKeyRepository {
    package let directory: String

    package init(directory: String) { self.directory = directory }

    package func key(named name: String) async throws -> Data {
        let path = (directory as NSString).appendingPathComponent(name)
        if let existing = FileManager.default.contents(atPath: path), existing.count >= 32 { return existing }
        let key = Self.newKey()
        guard FileManager.default.createFile(atPath: path, contents: key, attributes: [.posixPermissions: 0o600]) else {
            throw SigningKeyFileError(path: path)
        }
        return key
    }

    package func existingKey(named name: String) async throws -> Data? {
        FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(name))
    }
}

package struct SigningKeyFileError: Error, CustomStringConvertible {
    var path: String
    package var description: String { "cannot write the signing key to \(path)" }
}
