//! CNHi FieldOps: one `credential_provider!` block.

credential_provider! {
    /// CNHi FieldOps credentials: your application's client id, secret and subscription key,
    /// and the grower's refresh token (legacy CNHi subscription keys do not work here).
    CnhiFieldOps {
        name: "CNHi FieldOps",
        title: "CNHi FieldOps",
        slug: "cnhi-field-ops-credentials",
        object: "cnhiFieldOpsCredentials",
        operation: "cnhi_field_ops",
        request: CnhiFieldOpsCredentialsRequest,
        response: CnhiFieldOpsCredentials,
        fields: {
            /// Your application's client id from the CNH developer portal.
            required plain client_id: String,
            /// Your application's client secret.
            required secret client_secret: String,
            /// Your FieldOps subscription key.
            required secret subscription_key: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
            /// Which CNH environment the application is registered in; `STAGE` when absent.
            optional environment client_environment: Option<ClientEnvironment> = "STAGE",
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
        },
        // The same identity server as legacy CNHi.
        check: CheckKind::OAuthRefresh(super::cnhi::IDENTITY),
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "subscriptionKey": "your-subscription-key",
            "refreshToken": "grower-refresh-token",
            "clientEnvironment": "STAGE"
        },
    }
}
