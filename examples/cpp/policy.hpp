// What a device needs from dsedge.json besides the model: preprocessing parameters, class names and
// the decision policy (temperature, melanoma threshold, uncertainty margin) — dsedge.runtime.decision.
#pragma once

#include <string>
#include <vector>

#include "preprocess.hpp"

namespace dsedge {

struct Policy {
    std::vector<std::string> classes;
    double temperature = 1.0;
    bool has_threshold = false;           // false: "refer" when MEL is the top class (risk_calibrated false)
    double threshold = 0.0;
    double uncertain_margin = 0.15;
    std::string melanoma_class = "MEL";
};

struct Manifest {
    PreprocessParams preprocessing;
    Policy policy;
    std::string logits_output;            // the manifest's first output name ("logits")
    std::vector<std::string> onnx_files;  // "model.onnx", "model.int8.onnx", ... (kind "onnx")
};

struct Decision {
    std::vector<double> probabilities;   // softmax(logits / temperature), float64
    std::string decision;                // "refer" or the most probable benign class
    double melanoma_risk = -1.0;         // calibrated P(MEL), -1 when the model has no MEL class
    bool uncertain = false;              // top-2 margin below uncertain_margin
};

// Reads BUNDLE/dsedge.json; throws std::runtime_error on a manifest it cannot follow.
Manifest read_manifest(const std::string& bundle_dir);

// The decision of one image from its raw logits (the same arithmetic as DecisionPolicy).
Decision decide(const Policy& policy, const std::vector<float>& logits);

}  // namespace dsedge
