import ArgumentParser
import Foundation
import MediaPipeline

/// `mediagate decode-worker MEMORY`: decodes files for `mediagate serve`, in a process of its own
/// that the server kills at the time limit (see `DecodeWorkerProcess`). Not for people: jobs
/// and answers are JSON lines on stdin and stdout.
struct DecodeWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode-worker",
        abstract: "Decode files for the server, in a process it can kill (internal).",
        shouldDisplay: false)

    @Argument var memoryLimitBytes: Int

    func run() throws {
        let status = DecodeWorkerMain.serve(memoryLimitBytes: memoryLimitBytes)
        if status != 0 { throw ExitCode(status) }
    }
}
