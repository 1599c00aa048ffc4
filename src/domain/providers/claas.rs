//! CLAAS: one `credential_provider!` block.

credential_provider! {
    /// CLAAS credentials: your application's key and secret and the grower's refresh token.
    Claas {
        name: "CLAAS",
        title: "CLAAS",
        slug: "claas-credentials",
        object: "claasCredentials",
        operation: "claas",
        request: ClaasCredentialsRequest,
        response: ClaasCredentials,
        fields: {
            /// Your application's key (client id) from CLAAS.
            required plain client_key: String,
            /// Your application's secret.
            required secret client_secret: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
            /// Which CLAAS environment the application is registered in; `STAGE` when absent.
            optional environment client_environment: Option<ClientEnvironment> = "STAGE",
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
        },
        // CLAAS publishes no token endpoint: configure it (see the README).
        check: CheckKind::OAuthRefresh(OAuthCheck::unpublished(
            ClientAuth::Basic { id: "clientKey", secret: "clientSecret" },
        )),
        example: {
            "clientKey": "your-client-key",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token",
            "clientEnvironment": "STAGE"
        },
    }
}
