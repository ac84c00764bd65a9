import ArgumentParser
import Foundation

/// Expands the paths given on the command line into the regular files to process.
struct FileWalker {
    var recursive: Bool

    /// Files named directly come back as given; directories give their non-hidden files,
    /// sorted, descending only with `recursive`.
    func files(in paths: [String]) throws -> [String] {
        var result = [String]()
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw ValidationError("No such file or directory: \(path)")
            }
            if isDirectory.boolValue {
                result += try filesInDirectory(path)
            } else {
                result.append(path)
            }
        }
        return result
    }

    private func filesInDirectory(_ directory: String) throws -> [String] {
        let root = URL(fileURLWithPath: directory)
        let keys: [URLResourceKey] = [.isRegularFileKey, .isDirectoryKey]
        var options: FileManager.DirectoryEnumerationOptions = [.skipsHiddenFiles]
        if !recursive { options.insert(.skipsSubdirectoryDescendants) }
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: keys, options: options) else {
            throw ValidationError("Cannot read directory: \(directory)")
        }
        var files = [String]()
        for case let url as URL in enumerator {
            let values = try? url.resourceValues(forKeys: Set(keys))
            if values?.isRegularFile == true { files.append(url.path) }
        }
        return files.sorted()
    }
}
