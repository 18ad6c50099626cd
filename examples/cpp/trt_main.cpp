// dsedge C++ reference, TensorRT variant (UNVERIFIED: no GPU or TensorRT on the machines this was
// written on; it compiles only with -DDSEDGE_WITH_TENSORRT=ON where TensorRT 10+ headers exist).
//
//   dsedge_trt BUNDLE ENGINE.plan IMAGE.jpg... [--json]
//
// The same contract preprocessing and decision policy as main.cpp (OpenVINO); inference through
// TensorRT's name-based I/O API: deserializeCudaEngine, setInputShape, setTensorAddress, enqueueV3.
// ENGINE.plan is one of the bundle's `model.<precision>.<gpu>.plan` files (`dsedge build`), built
// for this GPU and this exact TensorRT version. Inputs and outputs are float32 (the bundle's ONNX
// files keep FP32 I/O in every precision).
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy.hpp"
#include "preprocess.hpp"

#if NV_TENSORRT_MAJOR < 10
#error "dsedge_trt needs TensorRT 10 or newer (enqueueV3 and name-based tensor I/O)"
#endif

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class Logger : public nvinfer1::ILogger {
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::fprintf(stderr, "[tensorrt] %s\n", msg);
    }
};

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

size_t volume(const nvinfer1::Dims& d) {
    size_t n = 1;
    for (int i = 0; i < d.nbDims; ++i) n *= static_cast<size_t>(d.d[i]);
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: dsedge_trt BUNDLE ENGINE.plan IMAGE.jpg... [--json]\n";
        return 2;
    }
    const std::string bundle = argv[1], plan_path = argv[2];
    std::vector<std::string> images;
    bool json = false;
    for (int i = 3; i < argc; ++i) {
        const std::string s = argv[i];
        if (s == "--json") json = true; else images.push_back(s);
    }
    try {
        const dsedge::Manifest manifest = dsedge::read_manifest(bundle);
        const int crop = manifest.preprocessing.crop;
        std::ifstream f(plan_path, std::ios::binary);
        if (!f) throw std::runtime_error("cannot open " + plan_path);
        const std::vector<char> plan{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
        Logger logger;
        std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
        std::unique_ptr<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(plan.data(), plan.size())};
        if (!engine) throw std::runtime_error(plan_path + ": not an engine for this GPU / TensorRT version");
        std::unique_ptr<nvinfer1::IExecutionContext> context{engine->createExecutionContext()};
        std::string input_name, output_name;
        for (int i = 0; i < engine->getNbIOTensors(); ++i) {
            const char* name = engine->getIOTensorName(i);
            if (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT) input_name = name;
            else if (output_name.empty() || manifest.logits_output == name) output_name = name;
        }
        context->setInputShape(input_name.c_str(), nvinfer1::Dims4{1, 3, crop, crop});
        cudaStream_t stream;
        check(cudaStreamCreate(&stream), "cudaStreamCreate");
        // every output needs an address; only the logits are copied back
        std::vector<void*> buffers;
        void* d_input = nullptr;
        void* d_logits = nullptr;
        size_t n_logits = 0;
        for (int i = 0; i < engine->getNbIOTensors(); ++i) {
            const char* name = engine->getIOTensorName(i);
            const size_t n = volume(context->getTensorShape(name));
            void* ptr = nullptr;
            check(cudaMalloc(&ptr, n * sizeof(float)), "cudaMalloc");
            buffers.push_back(ptr);
            context->setTensorAddress(name, ptr);
            if (input_name == name) d_input = ptr;
            if (output_name == name) { d_logits = ptr; n_logits = n; }
        }
        int failures = 0;
        for (const std::string& image : images) {
            nlohmann::json result = {{"image", image}};
            try {
                auto t0 = Clock::now();
                const dsedge::Decoded decoded = dsedge::decode_jpeg(image);
                if (decoded.has_icc) throw dsedge::Unsupported(image + ": embedded ICC profile (not converted here)");
                const double decode_ms = ms_since(t0);
                t0 = Clock::now();
                const std::vector<float> tensor = dsedge::preprocess(decoded, manifest.preprocessing);
                const double pre_ms = ms_since(t0);
                t0 = Clock::now();
                std::vector<float> logits(n_logits);
                check(cudaMemcpyAsync(d_input, tensor.data(), tensor.size() * sizeof(float), cudaMemcpyHostToDevice,
                                      stream), "copy in");
                if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed");
                check(cudaMemcpyAsync(logits.data(), d_logits, n_logits * sizeof(float), cudaMemcpyDeviceToHost,
                                      stream), "copy out");
                check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
                const double infer_ms = ms_since(t0);
                t0 = Clock::now();
                const dsedge::Decision d = dsedge::decide(manifest.policy, logits);
                const double post_ms = ms_since(t0);
                result["decision"] = d.decision;
                result["logits"] = logits;
                result["probabilities"] = d.probabilities;
                result["uncertain"] = d.uncertain;
                result["timings_ms"] = {{"decode", decode_ms}, {"preprocess", pre_ms}, {"infer", infer_ms},
                                        {"post", post_ms}};
                if (!json) {
                    std::printf("%s: %s\n  pre / infer / post ms: %.2f / %.2f / %.2f\n", image.c_str(),
                                d.decision.c_str(), decode_ms + pre_ms, infer_ms, post_ms);
                }
            } catch (const std::exception& e) {
                ++failures;
                result["error"] = e.what();
                if (!json) std::fprintf(stderr, "error: %s\n", e.what());
            }
            if (json) std::cout << result.dump() << std::endl;
        }
        for (void* p : buffers) cudaFree(p);
        cudaStreamDestroy(stream);
        return failures ? 1 : 0;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    }
}
